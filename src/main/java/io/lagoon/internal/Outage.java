package io.lagoon.internal;

import io.lagoon.PoolUnavailableException;
import java.time.Duration;
import java.util.concurrent.atomic.LongAdder;
import org.jspecify.annotations.Nullable;

/**
 * The pool's down state and what it does to acquires. {@link Creator} opens connections and keeps
 * the record of failed connects; the pool is down while the last connect failed and no connection
 * is open. Then an acquire with acquireRetry 0 fails at once, and a waiter fails once it has seen
 * more than acquireRetry connect failures, each with a {@link PoolUnavailableException} that names
 * the connect error; they are counted in {@code PoolStats.unavailable}. When to look is decided
 * by {@link PoolCore} (acquire, a waiter joining, a connection closing) and {@link Creator} (a
 * connect failing).
 *
 * <p>Lock-free; any method may run on any thread. A waiter leaves WAITING by CAS, so failing it
 * here never races with its assignment or cancellation.
 */
final class Outage {

  private final PoolCore core;
  private final Creator creator;
  private final Slots slots;
  private final PoolConfig config;
  private final LongAdder unavailableCount = new LongAdder();

  Outage(PoolCore core, Creator creator) {
    this.core = core;
    this.creator = creator;
    this.slots = core.slots();
    this.config = core.config();
  }

  /**
   * Down: the last connect failed and no connection is open, so a waiter could only wait for the
   * back-off and the next connect. One volatile read while connects succeed.
   */
  boolean isDown() {
    return creator.failureStreak() > 0 && !slots.hasOpenConnection();
  }

  /** Fails an acquire that will not wait: nothing open to wait for, connects fail. */
  void failNow(Acquire a) {
    if (a.fail(unavailableError())) {
      unavailableCount.increment();
    }
  }

  /**
   * While the pool is down, fails the oldest waiters that saw more than acquireRetry connect
   * failures (a waiter that joined while the pool was down counts that failure too).
   */
  void failWaitersAfterRetries(long failures) {
    int retries = config.acquireRetry();
    if (retries == Integer.MAX_VALUE) {
      return;
    }
    PoolUnavailableException error = null;
    for (Acquire w : core.waiters()) {
      if (w.state() != Acquire.WAITING) {
        continue;
      }
      if (failures - w.failuresAtStart <= retries) {
        return; // later waiters started later and saw fewer failures
      }
      if (error == null) {
        error = unavailableError();
      }
      if (w.failWaiting(error)) {
        unavailableCount.increment();
      }
    }
  }

  /**
   * The connect error that keeps the pool down (no connection open, last connect failed), or null.
   */
  @Nullable Throwable cause() {
    if (!isDown()) {
      return null;
    }
    Throwable e = creator.lastError();
    return e != null ? e : new IllegalStateException("connects fail");
  }

  /** Acquires failed because the pool was down. */
  long unavailable() {
    return unavailableCount.sum();
  }

  private PoolUnavailableException unavailableError() {
    long now = core.now();
    Throwable cause = creator.lastError();
    return new PoolUnavailableException(core.name(), creator.failureStreak(),
        Duration.ofNanos(Math.max(0, now - creator.lastErrorNanos())),
        Duration.ofNanos(Math.max(0, creator.retryAtNanos() - now)), core.stats(),
        cause != null ? cause : new IllegalStateException("no connect error recorded"));
  }
}
