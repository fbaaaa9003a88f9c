package io.lagoon.internal;

import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import reactor.core.scheduler.Scheduler;

/**
 * Where the pool reads time. {@link System#nanoTime()} in production; the scheduler's own clock
 * when the scheduler is reactor-test's virtual-time scheduler, so that tests move the pool's clock
 * and its timers together.
 */
@FunctionalInterface
interface PoolClock {

  long nanoTime();

  static PoolClock of(Scheduler scheduler) {
    Scheduler s = scheduler;
    // Schedulers.parallel() and friends wrap the real scheduler in a caching Supplier.
    while (s instanceof Supplier<?> supplier && supplier.get() instanceof Scheduler inner
        && inner != s) {
      s = inner;
    }
    for (Class<?> c = s.getClass(); c != null; c = c.getSuperclass()) {
      if (c.getName().equals("reactor.test.scheduler.VirtualTimeScheduler")) {
        return () -> scheduler.now(TimeUnit.NANOSECONDS);
      }
    }
    return System::nanoTime;
  }
}
