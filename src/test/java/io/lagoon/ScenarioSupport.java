package io.lagoon;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;

/**
 * What the proxy scenarios share beyond {@code io.lagoon.testing}: a connect counter, their phases
 * and their line of figures.
 */
final class ScenarioSupport {

  static final Duration BOUND = Duration.ofSeconds(30);

  private ScenarioSupport() {}

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
