package io.lagoon.internal;

import java.lang.ref.PhantomReference;
import java.lang.ref.Reference;
import java.lang.ref.ReferenceQueue;
import java.util.concurrent.atomic.LongAdder;

/**
 * Takes back connections whose handle the garbage collector found unreachable while still lent
 * (see {@link #reclaim}). Each lend's handle is watched by a {@link LendWatch} that its entry holds
 * while the lend lasts; {@link LeakDetector#abandoned} logs each connection taken back. This runs
 * whether leak detection is on or off: it is the pool's own recovery, not a report.
 *
 * <p>Lock-free; any method may run on any thread. Taking an entry back is the same CAS a handle's
 * close() makes, (g,LENT) -> (g,OWNED), so the two never both succeed (I2, I5 in {@link
 * PoolCore}).
 */
final class AbandonedHandles {

  private final PoolCore core;
  private final ReferenceQueue<PooledConnection> abandoned = new ReferenceQueue<>();
  private final LongAdder abandonedCount = new LongAdder();

  AbandonedHandles(PoolCore core) {
    this.core = core;
  }

  /** A new watch on {@code handle}, the handle of the lend with {@code stamp} on {@code entry}. */
  Reference<PooledConnection> watch(PooledConnection handle, PooledEntry entry, long stamp) {
    return new LendWatch(handle, abandoned, entry, stamp);
  }

  /** Connections taken back because their handle was collected without close(). */
  long count() {
    return abandonedCount.sum();
  }

  /**
   * A phantom reference to one lend's handle. The entry holds it while the lend lasts; once the
   * handle is unreachable without having been closed (an operator such as {@code timeout()} dropped
   * the connection as it arrived, or the application lost it), the garbage collector queues it and
   * {@link #reclaim} takes the connection back. A released entry drops its watch, so a
   * closed handle that is collected later queues nothing.
   */
  private static final class LendWatch extends PhantomReference<PooledConnection> {
    final PooledEntry entry;
    final long stamp;

    LendWatch(PooledConnection handle, ReferenceQueue<PooledConnection> queue, PooledEntry entry,
        long stamp) {
      super(handle, queue);
      this.entry = entry;
      this.stamp = stamp;
    }
  }

  /**
   * Takes back every connection whose handle the garbage collector found unreachable while still
   * lent to it: nobody can close it any more. Its state is unknown (a transaction may be open), so
   * it is closed, not reset, and its slot freed. Runs on the slow path of acquire and in
   * housekeeping; costs one volatile read when nothing was abandoned.
   */
  void reclaim() {
    Reference<? extends PooledConnection> r;
    while ((r = abandoned.poll()) != null) {
      LendWatch w = (LendWatch) r;
      PooledEntry e = w.entry;
      if (e.cas(w.stamp, PooledEntry.withState(w.stamp, PooledEntry.OWNED))) {
        abandonedCount.increment();
        e.evictReason = io.lagoon.PoolListener.EvictionReason.ABANDONED;
        core.leaks().abandoned(e, w.stamp, core.stats()); // the WARN, with the borrow site if known
        core.destroy(e);
      }
    }
  }
}
