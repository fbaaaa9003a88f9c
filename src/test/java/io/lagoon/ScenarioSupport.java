package io.lagoon;

import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.reactivestreams.Publisher;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/** What the reliability scenarios share: markers, server-side counts, figures. */
final class ScenarioSupport {

  static final Duration BOUND = Duration.ofSeconds(30);

  private ScenarioSupport() {}

  /** A unique application_name: the only backends a scenario counts are its own. */
  static String marker(String scenario) {
    return "lagoon-" + scenario + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  /** Backends on the server carrying {@code marker}, counted through a direct connection. */
  static long backends(String marker) {
    return Mono.usingWhen(Mono.from(PostgresSupport.connectionFactory().create()),
        c -> Flux.from(c.createStatement(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind("$1", marker).execute())
            .concatMap(r -> r.map((row, meta) -> row.get(0, Long.class))).single(),
        Connection::close).block(BOUND);
  }

  /** Samples {@link #backends} every 50 ms on a background thread and keeps the maximum. */
  static final class BackendWatch implements AutoCloseable {
    private final AtomicLong max = new AtomicLong();
    private final Disposable sampling;

    BackendWatch(String marker) {
      sampling = Flux.interval(Duration.ZERO, Duration.ofMillis(50), Schedulers.boundedElastic())
          .onBackpressureDrop()
          .concatMap(t -> Mono.fromCallable(() -> backends(marker))
              .subscribeOn(Schedulers.boundedElastic())
              .onErrorResume(e -> Mono.empty()), 1)
          .subscribe(n -> max.accumulateAndGet(n, Math::max));
    }

    long max() {
      return max.get();
    }

    @Override
    public void close() {
      sampling.dispose();
    }
  }

  /** A driver factory that counts connect attempts. */
  static final class Counting implements ConnectionFactory {
    final ConnectionFactory real;
    final AtomicInteger attempts = new AtomicInteger();

    Counting(ConnectionFactory real) {
      this.real = real;
    }

    @Override
    public Publisher<? extends Connection> create() {
      return Mono.defer(() -> {
        attempts.incrementAndGet();
        return Mono.from(real.create());
      });
    }

    @Override
    public ConnectionFactoryMetadata getMetadata() {
      return real.getMetadata();
    }
  }

  /** Prints one line of figures, marked so that CI logs can be searched for them. */
  static void figures(String scenario, String format, Object... args) {
    System.out.println("[reliability] " + scenario + ": " + String.format(Locale.ROOT, format, args));
  }

  /** The scenario's phases: load runs while time passes; this is the experiment, not a wait. */
  static void phase(Duration d) {
    Mono.delay(d).block();
  }

  static long percentile(List<Long> sorted, double p) {
    if (sorted.isEmpty()) {
      return -1;
    }
    return sorted.get((int) Math.min(sorted.size() - 1, Math.floor(p * sorted.size())));
  }
}
