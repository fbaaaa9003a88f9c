package io.lagoon.testing;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * A virtual-time scheduler whose clock moves on by a fixed step every time it is read, as if the
 * work between two reads took that long: a deterministic model of a slow or busy machine. Timers
 * still run only when the test advances time. Read by the pool as its clock, like any {@link
 * VirtualTimeScheduler}.
 */
public final class TickingVirtualTime extends VirtualTimeScheduler {

  private final long stepNanos;
  private final AtomicLong elapsed = new AtomicLong();

  public TickingVirtualTime(Duration step) {
    super(false); // as VirtualTimeScheduler.create()
    this.stepNanos = step.toNanos();
  }

  @Override
  public long now(TimeUnit unit) {
    long ticked = elapsed.addAndGet(stepNanos);
    return unit.convert(super.now(TimeUnit.NANOSECONDS) + ticked, TimeUnit.NANOSECONDS);
  }
}
