package io.lagoon.internal;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.function.Predicate;
import org.jspecify.annotations.Nullable;

/**
 * The pool's {@code maxSize} slots, each null (free) or holding one {@link PooledEntry}, and the
 * scans over them that make no state-machine decision: reserving and freeing a slot, counting, and
 * taking idle entries that a predicate selects. Which entry to lend, retire or validate is decided
 * in {@link PoolCore} (see the comment at its top, STATE and I1).
 *
 * <p>Lock-free; any method may run on any thread. A count is a racy snapshot: each slot is read
 * once, the slots one after another.
 */
final class Slots {

  private final AtomicReferenceArray<@Nullable PooledEntry> slots;

  Slots(int maxSize) {
    this.slots = new AtomicReferenceArray<>(maxSize);
  }

  int length() {
    return slots.length();
  }

  @Nullable PooledEntry get(int i) {
    return slots.get(i);
  }

  /** Reserves a free slot for a new entry; -1 when the pool is full. */
  int reserve(PooledEntry e) {
    for (int i = 0, n = slots.length(); i < n; i++) {
      if (slots.get(i) == null && slots.compareAndSet(i, null, e)) {
        e.slot = i;
        return i;
      }
    }
    return -1;
  }

  /** Frees the slot of an entry whose physical connection is gone (or never came). */
  void free(PooledEntry e) {
    slots.compareAndSet(e.slot, e, null);
  }

  boolean hasFree() {
    for (int i = 0, n = slots.length(); i < n; i++) {
      if (slots.get(i) == null) {
        return true;
      }
    }
    return false;
  }

  int allocated() {
    int n = 0;
    for (int i = 0; i < slots.length(); i++) {
      if (slots.get(i) != null) {
        n++;
      }
    }
    return n;
  }

  int idleCount() {
    int n = 0;
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.state() == PooledEntry.IDLE) {
        n++;
      }
    }
    return n;
  }

  /**
   * Whether some connection is open and may serve again: idle, lent, or held by the pool
   * (validating, resetting), and not known broken. A lent connection that failed with an error
   * meaning it is gone is closed when it comes back: nobody can wait for it.
   */
  boolean hasOpenConnection() {
    for (int i = 0, n = slots.length(); i < n; i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.connection != null && !e.broken && e.state() != PooledEntry.CLOSING) {
        return true;
      }
    }
    return false;
  }

  /**
   * How long before {@code now} the most recently working idle connection was last seen working
   * (returned after use, validated, opened); -1 when no connection is idle.
   */
  long freshestIdleNanos(long now) {
    long best = -1;
    for (int i = 0, n = slots.length(); i < n; i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.state() == PooledEntry.IDLE) {
        long age = Math.max(0, now - e.lastAliveNanos);
        best = best < 0 ? age : Math.min(best, age);
      }
    }
    return best;
  }

  /** Takes every idle entry that {@code which} selects, highest slot first. */
  List<PooledEntry> takeAllIdle(Predicate<PooledEntry> which) {
    List<PooledEntry> taken = new ArrayList<>();
    for (int i = slots.length() - 1; i >= 0; i--) {
      PooledEntry e = slots.get(i);
      long s;
      if (e != null && PooledEntry.state(s = e.stamp()) == PooledEntry.IDLE && which.test(e)
          && e.takeIdle(s, false) != -1) {
        taken.add(e); // the choice was made on the same reading the CAS checks
      }
    }
    return taken;
  }

  /** The occupied slots, and how many of them hold an IDLE or a LENT entry, in one pass. */
  Counts count() {
    int allocated = 0;
    int idle = 0;
    int lent = 0;
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e == null) {
        continue;
      }
      allocated++;
      int s = e.state();
      if (s == PooledEntry.IDLE) {
        idle++;
      } else if (s == PooledEntry.LENT) {
        lent++;
      }
    }
    return new Counts(allocated, idle, lent);
  }

  /** What {@link #count} saw. */
  record Counts(int allocated, int idle, int lent) {}
}
