package io.lagoon;

import io.lagoon.internal.JmxRegistration;
import io.lagoon.internal.PoolAccess;
import io.lagoon.internal.PoolConfig;
import io.lagoon.internal.PoolCore;
import io.r2dbc.spi.Closeable;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * A fair, bounded, non-blocking pool of R2DBC connections, itself a {@link ConnectionFactory}.
 *
 * <pre>{@code
 * ConnectionPool pool = ConnectionPool.builder(driverFactory).maxSize(10).build();
 * Flux<String> names = pool.withConnection(c ->
 *     Flux.from(c.createStatement("SELECT name FROM item").execute())
 *         .flatMap(r -> r.map((row, meta) -> row.get(0, String.class))));
 * }</pre>
 *
 * <p>Acquires are served in arrival order. When every connection is lent, subscribers wait in a
 * FIFO queue bounded by {@code maxPendingAcquires}, each for at most {@code maxAcquireTime}. A
 * borrowed connection goes back to the pool when its {@link Connection#close()} is subscribed to;
 * the handle is dead afterwards.
 *
 * <p>Every {@code Mono} and {@code Flux} returned here is lazy: nothing happens until it is
 * subscribed to. Thread-safe; no method blocks except {@link #dispose()}, for a bounded time.
 */
public final class ConnectionPool
    implements ConnectionFactory, Closeable, Disposable, Wrapped<ConnectionFactory> {

  private final PoolConfig config;
  private final PoolCore core;
  /** The acquire every create() returns while leak detection is off (nothing to record). */
  private final Mono<Connection> acquire;
  private final boolean leakDetection;
  private final @Nullable JmxRegistration jmx;

  static {
    PoolAccess.install(pool -> pool.core);
  }

  ConnectionPool(PoolConfig config, List<PoolListener> listeners) {
    this.config = config;
    this.core = new PoolCore(config);
    this.acquire = core.acquireMono(null);
    this.leakDetection = config.leakDetection();
    for (PoolListener listener : listeners) {
      core.events().add(this, listener); // before start: they see the first connects
    }
    this.jmx = config.registerJmx()
        ? JmxRegistration.register(config.poolName(), core::stats, core::softEvict) : null;
    core.start();
  }

  private void unregisterJmx() {
    if (jmx != null) {
      jmx.unregister();
    }
  }

  /** A builder for a pool over the driver's {@code factory}. */
  public static ConnectionPoolBuilder builder(ConnectionFactory factory) {
    return new ConnectionPoolBuilder(factory);
  }

  /**
   * Acquires a connection: an idle one, a new one, or, when none is free, the first one released
   * after every earlier waiter was served. Close the connection to return it. Lazy.
   *
   * <p>Fails with {@link PoolAcquireTimeoutException} after {@code maxAcquireTime}, {@link
   * PoolExhaustedException} when {@code maxPendingAcquires} subscribers already wait, and {@link
   * PoolClosedException} once the pool is closed. Cancelling never loses a connection: one that was
   * not yet delivered goes back to the pool.
   *
   * <p>With {@code leakDetectionThreshold} set, this call records its caller's stack: the borrow
   * site that a leak warning shows for every connection this Mono acquires.
   */
  @Override
  public Mono<Connection> create() {
    return leakDetection ? core.acquireMono(core.borrowSite()) : acquire;
  }

  /**
   * Acquires a connection, runs {@code work} with it and returns it to the pool when the work
   * completes, fails or is cancelled. Lazy.
   */
  public <T> Flux<T> withConnection(Function<? super Connection, ? extends Publisher<? extends T>> work) {
    Objects.requireNonNull(work, "work must not be null");
    return Flux.usingWhen(create(), work, Connection::close, (c, err) -> c.close(),
        Connection::close);
  }

  /**
   * Like {@link #withConnection}, inside a transaction: committed when {@code work} completes,
   * rolled back when it or the commit fails (the subscriber sees that error, not a wrapper), and
   * rolled back by the pool's reset when the subscriber cancels. Lazy.
   */
  public <T> Flux<T> inTransaction(Function<? super Connection, ? extends Publisher<? extends T>> work) {
    Objects.requireNonNull(work, "work must not be null");
    return withConnection(c -> Mono.from(c.beginTransaction())
        .thenMany(Flux.<T>defer(() -> Flux.from(work.apply(c))))
        .concatWith(Mono.from(c.commitTransaction()).then(Mono.<T>empty()))
        .onErrorResume(error -> Mono.from(c.rollbackTransaction())
            .onErrorResume(rollbackError -> {
              error.addSuppressed(rollbackError);
              return Mono.empty();
            })
            .then(Mono.<T>error(error))));
  }

  /**
   * Opens connections until {@code initialSize} are allocated, at most {@code
   * maxConcurrentCreates} at a time, after the background fill that started at build time. Emits
   * how many connections this call opened. Lazy.
   */
  public Mono<Integer> warmup() {
    return core.warmup();
  }

  /**
   * Closes every idle connection now and every lent one when it comes back, then opens as many
   * connections as the pool held: for credential rotation and database failover. Completes when
   * the idle connections are closed and the refill is done. Lazy.
   */
  public Mono<Void> softEvict() {
    return core.softEvict();
  }

  /**
   * Attaches a listener to the pool's events (see {@link PoolListener}): its {@code onAttach} runs
   * now, then it receives every event until the returned handle is disposed (which calls its
   * {@code onDetach}) or the pool has closed every connection after {@code close()}. To see the
   * connects of the initial fill too, register it with {@link ConnectionPoolBuilder#listener}.
   */
  public Disposable addListener(PoolListener listener) {
    Objects.requireNonNull(listener, "listener must not be null");
    return core.events().add(this, listener);
  }

  /** A consistent snapshot of the pool's gauges and counters. */
  public PoolStats stats() {
    return core.stats();
  }

  /** The pool's name, as used in errors and meters. */
  public String name() {
    return config.poolName();
  }

  /**
   * Closes the pool: new acquires and waiting subscribers fail with {@link PoolClosedException},
   * idle connections are closed, lent ones are closed when they come back. Completes once the idle
   * connections and connects in flight are closed. Lazy; idempotent.
   */
  @Override
  public Mono<Void> close() {
    return core.close().doOnSubscribe(s -> unregisterJmx());
  }

  /**
   * Closes the pool like {@link #close()}, then lets lent connections finish for up to {@code
   * grace}; those still lent then are closed under their borrowers. Completes when every
   * connection is closed. Lazy.
   */
  public Mono<Void> closeGracefully(Duration grace) {
    Objects.requireNonNull(grace, "grace must not be null");
    if (grace.isNegative()) {
      throw new IllegalArgumentException("grace (" + grace + ") must not be negative");
    }
    return core.closeGracefully(grace).doOnSubscribe(s -> unregisterJmx());
  }

  /**
   * Closes the pool like {@link #close()} and waits at most {@code maxCloseTime} + 1 s for idle
   * connections to close. The only method of the pool that may block; on a thread that must not
   * block it returns without waiting.
   */
  @Override
  public void dispose() {
    unregisterJmx();
    core.dispose();
  }

  @Override
  public boolean isDisposed() {
    return core.isClosed();
  }

  /** The driver's metadata, so frameworks still recognise the database behind the pool. */
  @Override
  public ConnectionFactoryMetadata getMetadata() {
    return config.factory().getMetadata();
  }

  /** The driver's connection factory. */
  @Override
  public ConnectionFactory unwrap() {
    return config.factory();
  }

  @Override
  public String toString() {
    return "ConnectionPool[" + config.poolName() + ", " + core.stats() + "]";
  }
}
