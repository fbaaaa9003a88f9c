package io.lagoon;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import reactor.core.publisher.Mono;

/** Waits for a condition on real time (a real server, a real scheduler): polls, never sleeps blind. */
final class Await {

  private Await() {}

  /** Polls {@code condition} every 10 ms; fails after 10 s. */
  static void await(BooleanSupplier condition) {
    Boolean met = Mono.fromCallable(condition::getAsBoolean)
        .filter(Boolean::booleanValue)
        .repeatWhenEmpty(ticks -> ticks.delayElements(Duration.ofMillis(10)).take(1000))
        .block(Duration.ofSeconds(11));
    if (met == null) {
      throw new AssertionError("condition not met within 10 s");
    }
  }

  /** Waits until {@code pool} holds {@code idle} idle connections. */
  static void awaitIdle(ConnectionPool pool, int idle) {
    await(() -> pool.stats().idle() == idle);
  }
}
