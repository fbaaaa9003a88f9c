package io.lagoon.internal;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.jspecify.annotations.Nullable;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;

/**
 * Timers for the pool's bounds, none for a bound that is {@link PoolConfig#NO_LIMIT}: no task is
 * queued 100 years ahead, and no deadline is computed from it.
 */
final class Timers {

  private Timers() {}

  /**
   * Runs {@code task} on {@code scheduler} after {@code delay}; null, scheduling nothing, when the
   * delay means no limit.
   *
   * @throws java.util.concurrent.RejectedExecutionException if the scheduler refuses the task
   */
  static @Nullable Disposable after(Scheduler scheduler, Duration delay, Runnable task) {
    if (PoolConfig.isNoLimit(delay)) {
      return null;
    }
    return scheduler.schedule(task, delay.toNanos(), TimeUnit.NANOSECONDS);
  }

  /** {@code source} bounded by {@code limit}, or unchanged when the limit means no limit. */
  static <T> Mono<T> within(Mono<T> source, Duration limit, Scheduler scheduler) {
    return PoolConfig.isNoLimit(limit) ? source : source.timeout(limit, scheduler);
  }
}
