package io.lagoon.testing;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import reactor.core.Disposable;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * A virtual-time scheduler that many threads may use at once.
 *
 * <p>reactor-test's {@link VirtualTimeScheduler} runs due tasks by peeking at the earliest one and
 * then removing whatever is at the head of its queue: when another thread schedules an earlier
 * task, or disposes a task, between the two, one task runs twice and another is silently dropped.
 * (Concurrent callers of advanceTimeBy also return before the tasks they made due have run.)
 * Tests that schedule, dispose and advance from several threads (timers armed and disposed by the
 * threads that acquire and release connections) would then lose timers. This subclass serializes
 * scheduling, disposal and advancing on one lock; tasks still run on the thread that advances time.
 */
public final class SerializedVirtualTime extends VirtualTimeScheduler {

  private final Object lock = new Object();

  public SerializedVirtualTime() {
    super(false); // as VirtualTimeScheduler.create()
  }

  @Override
  public Disposable schedule(Runnable task) {
    synchronized (lock) {
      return serialized(super.schedule(task));
    }
  }

  @Override
  public Disposable schedule(Runnable task, long delay, TimeUnit unit) {
    synchronized (lock) {
      return serialized(super.schedule(task, delay, unit));
    }
  }

  @Override
  public Disposable schedulePeriodically(Runnable task, long initialDelay, long period,
      TimeUnit unit) {
    synchronized (lock) {
      return serialized(super.schedulePeriodically(task, initialDelay, period, unit));
    }
  }

  @Override
  public void advanceTimeBy(Duration delayTime) {
    synchronized (lock) {
      super.advanceTimeBy(delayTime);
    }
  }

  private Disposable serialized(Disposable d) {
    return () -> {
      synchronized (lock) {
        d.dispose();
      }
    };
  }
}
