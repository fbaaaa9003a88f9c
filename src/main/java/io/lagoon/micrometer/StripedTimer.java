package io.lagoon.micrometer;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongSupplier;

/**
 * Count, total and recent maximum of durations recorded on the pool's hot path, read by
 * Micrometer when it publishes.
 *
 * <p>Recording is lock-free, allocates nothing and reads no clock. A thread claims one of a few
 * cells with a single compare-and-set (the cell its id picks, so that each thread keeps to one),
 * adds to the cell's count and total and raises its maxima with plain writes, then frees the cell
 * with a release store. If that cell and the next are both busy, it records into a shared
 * overflow with atomic adds instead, so no thread ever waits for another. That is one atomic
 * instruction per record, where a Micrometer timer without a histogram spends two plus a clock
 * read for its time-window maximum. Cells are 128 bytes apart: threads on different cells share
 * no cache line.
 *
 * <p>The maximum means what a Micrometer timer's does: the longest duration of the last {@link
 * #EXPIRY_NANOS} (Micrometer's default expiry, 2 minutes), kept in {@link #WINDOWS} windows that
 * rotate every third of it. Each record raises every window; a rotation clears the window that
 * has been reported and reports the next one, the oldest. Since recording reads no clock, the
 * windows rotate when the maximum is read, by the reader's clock, and at most {@code WINDOWS - 1}
 * at a time: if reads come further apart than the expiry, the maximum covers at least the time
 * since the previous read, rather than drop durations whose time is unknown.
 *
 * <p>A reader sees each figure as of a recent moment; count and total may be one record apart.
 * Thread-safe.
 */
final class StripedTimer {

  /** Micrometer's default {@code DistributionStatisticConfig} expiry. */
  static final long EXPIRY_NANOS = 120_000_000_000L;
  /** Micrometer's default buffer length: how many windows make up the expiry. */
  static final int WINDOWS = 3;

  private static final int LOCK = 0;
  private static final int COUNT = 1;
  private static final int TOTAL = 2;
  private static final int MAX = 3;
  /** Longs per cell: 128 bytes, so no two cells share a cache line or an adjacent-line pair. */
  private static final int STRIDE = 16;
  private static final int MAX_CELLS = 32;
  private static final VarHandle CELLS = MethodHandles.arrayElementVarHandle(long[].class);

  private final long[] cells;
  private final int mask;
  private final AtomicLong overflowCount = new AtomicLong();
  private final AtomicLong overflowTotal = new AtomicLong();
  private final AtomicLongArray overflowMax = new AtomicLongArray(WINDOWS);
  private final LongSupplier clock;
  private final long rotateEveryNanos = EXPIRY_NANOS / WINDOWS;
  private int current; // guarded by this
  private long rotatedAt; // guarded by this

  /**
   * @param clock the reader's monotonic clock in nanoseconds (the registry's), read only when the
   *     maximum is read
   */
  StripedTimer(LongSupplier clock) {
    this(clock, Runtime.getRuntime().availableProcessors());
  }

  StripedTimer(LongSupplier clock, int processors) {
    int n = 1;
    while (n < 2 * processors && n < MAX_CELLS) {
      n <<= 1;
    }
    this.cells = new long[n * STRIDE];
    this.mask = n - 1;
    this.clock = clock;
    this.rotatedAt = clock.getAsLong();
  }

  /** Records one duration; a negative one is ignored, as Micrometer's timers do. */
  void record(long nanos) {
    if (nanos < 0) {
      return;
    }
    // The thread's id, a field read, spread over the cells (an identity hash would cost more: a
    // Thread's header often holds a lock, and then its hash is not in it).
    int i = (int) (Thread.currentThread().getId() * 0x9E3779B97F4A7C15L >>> 40);
    if (!recordInCell((i & mask) * STRIDE, nanos)) {
      recordContended(i, nanos);
    }
  }

  /** The thread's cell was busy: the next cell, else the overflow (kept off the hot path). */
  private void recordContended(int i, long nanos) {
    if (!recordInCell(((i + 1) & mask) * STRIDE, nanos)) {
      recordInOverflow(nanos);
    }
  }

  private boolean recordInCell(int c, long nanos) {
    long[] a = cells;
    if (!CELLS.compareAndSet(a, c + LOCK, 0L, 1L)) {
      return false;
    }
    // Only the holder of the cell writes it; opaque, so that readers never see a torn long.
    CELLS.setOpaque(a, c + COUNT, (long) CELLS.getOpaque(a, c + COUNT) + 1);
    if (nanos != 0) {
      CELLS.setOpaque(a, c + TOTAL, (long) CELLS.getOpaque(a, c + TOTAL) + nanos);
      // A rotation may clear a window between this read and write: what is written then is this
      // duration, recent by definition, never an older maximum.
      for (int w = c + MAX, end = w + WINDOWS; w < end; w++) {
        if (nanos > (long) CELLS.getOpaque(a, w)) {
          CELLS.setOpaque(a, w, nanos);
        }
      }
    }
    CELLS.setRelease(a, c + LOCK, 0L);
    return true;
  }

  /** The path of a record that found its cells busy; package-private for tests. */
  void recordInOverflow(long nanos) {
    overflowCount.incrementAndGet();
    if (nanos != 0) {
      overflowTotal.addAndGet(nanos);
      for (int w = 0; w < WINDOWS; w++) {
        long m;
        while (nanos > (m = overflowMax.get(w)) && !overflowMax.compareAndSet(w, m, nanos)) {
          // another thread raised it meanwhile: look again
        }
      }
    }
  }

  /** How many durations were recorded. */
  long count() {
    long n = overflowCount.get();
    for (int c = 0; c < cells.length; c += STRIDE) {
      n += (long) CELLS.getOpaque(cells, c + COUNT);
    }
    return n;
  }

  /** The sum of the recorded durations, in nanoseconds. */
  long totalNanos() {
    long t = overflowTotal.get();
    for (int c = 0; c < cells.length; c += STRIDE) {
      t += (long) CELLS.getOpaque(cells, c + TOTAL);
    }
    return t;
  }

  /** The longest duration of the last {@link #EXPIRY_NANOS}, in nanoseconds; see the class. */
  synchronized long maxNanos() {
    long now = clock.getAsLong();
    long due = (now - rotatedAt) / rotateEveryNanos;
    if (due > 0) {
      rotatedAt += due * rotateEveryNanos;
      for (long r = Math.min(due, WINDOWS - 1); r > 0; r--) {
        for (int c = 0; c < cells.length; c += STRIDE) {
          CELLS.setOpaque(cells, c + MAX + current, 0L);
        }
        overflowMax.set(current, 0);
        current = (current + 1) % WINDOWS;
      }
    }
    long max = overflowMax.get(current);
    for (int c = 0; c < cells.length; c += STRIDE) {
      max = Math.max(max, (long) CELLS.getOpaque(cells, c + MAX + current));
    }
    return max;
  }

  /** How many cells this timer stripes over (for tests). */
  int cells() {
    return mask + 1;
  }
}
