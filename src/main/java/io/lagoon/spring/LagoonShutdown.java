package io.lagoon.spring;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import org.jspecify.annotations.Nullable;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.context.SmartLifecycle;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * Closes every Lagoon pool of the application context when the context closes: new acquires are
 * refused at once, lent connections may finish for {@code lagoon.shutdown-grace} (default 5 s),
 * then every physical connection is closed. Pools are found among the {@code ConnectionFactory}
 * beans, also behind wrappers ({@link Wrapped#unwrap()}).
 *
 * <p>Its phase, {@link #PHASE}, is below the web server's (Spring Boot stops the server's graceful
 * shutdown at {@code DEFAULT_PHASE - 1024} and the server at {@code DEFAULT_PHASE - 2048}): requests
 * in flight finish first, with their connections, then the pool closes. Stopping does not block a
 * thread: the lifecycle processor is told when the pools are closed. A context that is stopped
 * and started again gets closed pools: a pool does not reopen.
 *
 * <p>Thread-safe.
 */
public class LagoonShutdown implements SmartLifecycle {

  /** Below the web server's phases, so that the pool closes after the server stopped. */
  public static final int PHASE = SmartLifecycle.DEFAULT_PHASE - 4096;

  private static final Logger LOG = Loggers.getLogger(LagoonShutdown.class);

  private final ObjectProvider<ConnectionFactory> connectionFactories;
  private final Duration grace;
  private volatile boolean running;
  private volatile @Nullable List<ConnectionPool> started;

  public LagoonShutdown(ObjectProvider<ConnectionFactory> connectionFactories, Duration grace) {
    if (grace.isNegative()) {
      throw new IllegalArgumentException("lagoon.shutdown-grace (" + grace
          + ") must not be negative");
    }
    this.connectionFactories = connectionFactories;
    this.grace = grace;
  }

  /** Finds the pools once every singleton exists, so that stopping creates no bean. */
  @Override
  public void start() {
    started = pools();
    running = true;
  }

  @Override
  public void stop() {
    stop(() -> {});
  }

  @Override
  public void stop(Runnable callback) {
    running = false;
    List<ConnectionPool> found = started;
    List<ConnectionPool> pools = found != null ? found : pools();
    if (pools.isEmpty()) {
      callback.run();
      return;
    }
    Flux.fromIterable(pools)
        .flatMap(pool -> pool.closeGracefully(grace)
            .doOnSuccess(v -> LOG.info("Closed Lagoon pool '{}': {}", pool.name(), pool.stats()))
            .onErrorResume(e -> {
              LOG.warn("Closing Lagoon pool '{}' failed", pool.name(), e);
              return Mono.empty();
            }))
        .doFinally(signal -> callback.run())
        .subscribe();
  }

  @Override
  public boolean isRunning() {
    return running;
  }

  @Override
  public int getPhase() {
    return PHASE;
  }

  /** The distinct Lagoon pools among the context's connection factories. */
  private List<ConnectionPool> pools() {
    Set<ConnectionPool> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    List<ConnectionPool> pools = new ArrayList<>();
    connectionFactories.orderedStream().forEach(cf -> {
      ConnectionPool pool = find(cf);
      if (pool != null && seen.add(pool)) {
        pools.add(pool);
      }
    });
    return pools;
  }

  /** The Lagoon pool that {@code factory} is or wraps, or null. */
  static @Nullable ConnectionPool find(@Nullable Object factory) {
    Object current = factory;
    for (int depth = 0; depth < 10 && current != null; depth++) {
      if (current instanceof ConnectionPool pool) {
        return pool;
      }
      current = current instanceof Wrapped<?> wrapped ? wrapped.unwrap() : null;
    }
    return null;
  }
}
