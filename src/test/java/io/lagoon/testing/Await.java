package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Waits for a condition that real time brings about (a real server, a real scheduler, the
 * collector): polls it every 10 ms on the calling thread until it holds, never sleeps blind, and
 * fails with an {@link AssertionError} naming what it waited for once the bound has passed.
 *
 * <p>The condition runs on the calling thread, so it may block (a round trip on a monitor
 * connection): call these from a test thread, never from a Reactor non-blocking thread. The
 * bound only decides when to give up; it is {@link #BOUND} (30 s) unless given, long enough that
 * a loaded 2-core machine does not fail a test that would have passed.
 */
public final class Await {

  /** How long a wait lasts at most unless a test says otherwise. */
  public static final Duration BOUND = Duration.ofSeconds(30);

  private static final Duration POLL = Duration.ofMillis(10);

  private Await() {}

  /** Polls {@code condition} until it holds, at most {@link #BOUND}. */
  public static void until(String what, BooleanSupplier condition) {
    until(() -> what, BOUND, condition);
  }

  /** Polls {@code condition} until it holds, at most {@code bound}. */
  public static void until(String what, Duration bound, BooleanSupplier condition) {
    until(() -> what, bound, condition);
  }

  /**
   * Polls {@code condition} until it holds, at most {@code bound}; {@code what} is asked only
   * when the wait fails, so it may describe the state at that moment.
   */
  public static void until(Supplier<String> what, Duration bound, BooleanSupplier condition) {
    long deadline = System.nanoTime() + bound.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() - deadline > 0) {
        throw new AssertionError("timed out after " + bound.toMillis() + " ms waiting until "
            + what.get());
      }
      Mono.delay(POLL).block();
    }
  }

  /**
   * Waits until the driver itself reports every one of {@code connections} as closed ({@code
   * validate(LOCAL)} answers false): a server's termination reaches the client a moment after the
   * backend is gone.
   */
  public static void driverSeesClosed(String what, Collection<? extends Connection> connections) {
    List<Connection> all = List.copyOf(connections);
    until(what, () -> Boolean.TRUE.equals(Flux.fromIterable(all)
        .concatMap(c -> Mono.from(c.validate(ValidationDepth.LOCAL)))
        .all(open -> !open)
        .block(BOUND)));
  }
}
