package io.lagoon.internal;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.IsolationLevel;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import org.jspecify.annotations.Nullable;

/**
 * One physical connection and its place in the pool. All of its state changes go through one
 * atomic {@code stamp}: {@code (generation << 2) | state}. See {@link PoolCore} for the states and
 * who may move an entry between them.
 */
final class PooledEntry {

  static final int IDLE = 0;
  static final int OWNED = 1;
  static final int LENT = 2;
  static final int CLOSING = 3;

  private static final VarHandle STAMP;

  static {
    try {
      STAMP = MethodHandles.lookup().findVarHandle(PooledEntry.class, "stamp", long.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  /** Generation and state; see the class comment. A new entry is OWNED by its creator. */
  private volatile long stamp = OWNED;

  /** The slot index, set once by the creator before the entry is published. */
  int slot = -1;

  /** The physical connection; set once by the creator before the entry first leaves OWNED. */
  @Nullable Connection connection;

  /**
   * When the entry last became idle. Written by its owner before it publishes the entry as IDLE;
   * read by whoever takes it out of IDLE.
   */
  long idleSinceNanos;

  /** When the connection was last seen working: given back after use, or validated. */
  long lastAliveNanos;

  /** When the connection's lifetime ends (maxLifeTime minus this entry's jitter). */
  long expiresAtNanos;

  /** This entry's keepalive jitter: keepalive runs this much before keepaliveInterval. */
  long keepaliveJitterNanos;

  /** The pool's soft-eviction epoch when the connection was opened. */
  int epoch;

  /**
   * The current lend's watch on its handle (see {@link AbandonedHandles#reclaim}); written by the
   * lender, cleared by the releaser before the entry leaves LENT.
   */
  @Nullable Object lendWatch;

  /**
   * The current (or last) lend's record for leak detection; null while detection is off. Written
   * by the lender, read by housekeeping without synchronization (see {@link LeakDetector}).
   */
  LeakDetector.@Nullable Lend leak;

  /** Set by the owner that took the entry from IDLE when it must be validated before a lend. */
  boolean validateBeforeLend;

  /** The stamp the owner installed when it took the entry from IDLE (the owner's own record). */
  long takenStamp;

  /**
   * Session state when the connection was opened (after postAllocate), restored on release. Set
   * by the creator before the entry is published.
   */
  boolean initialAutoCommit = true;

  /** The isolation level the driver reported when the connection was opened. */
  @Nullable IsolationLevel initialIsolation;

  /** The statement that resets the session to its state when opened; null if the driver has none. */
  @Nullable String sessionResetSql;

  /** An error raised through the connection showed that it is gone: close it, never lend it. */
  volatile boolean broken;

  /** When the current lend started, for listeners; {@link PoolEvents#NO_TIME} if nobody listened. */
  long lentAtNanos = PoolEvents.NO_TIME;

  /** When the connect that opened this entry started, for listeners. */
  long createStartNanos;

  /** Why the entry is closed, noted by a caller whose reason the entry's state does not show. */
  io.lagoon.PoolListener.@Nullable EvictionReason evictReason;

  static int state(long stamp) {
    return (int) (stamp & 3);
  }

  static long withState(long stamp, int state) {
    return (stamp & ~3L) | state;
  }

  /** The stamp of the next lend: a new generation, so no earlier handle can match it. */
  static long nextLend(long stamp) {
    return (((stamp >>> 2) + 1) << 2) | LENT;
  }

  long stamp() {
    return stamp;
  }

  int state() {
    return state(stamp);
  }

  /** Only the entry's owner may set the stamp without a CAS. */
  void setStamp(long value) {
    stamp = value;
  }

  boolean cas(long expected, long value) {
    return STAMP.compareAndSet(this, expected, value);
  }

  /**
   * Takes the entry out of IDLE if its stamp is still {@code observed} (so decisions made on that
   * reading hold): lent to a new generation when {@code lend}, else OWNED by the caller. Returns
   * the new stamp, or -1 when the entry was not idle any more or another thread won.
   */
  long takeIdle(long observed, boolean lend) {
    if (state(observed) != IDLE) {
      return -1;
    }
    long next = lend ? nextLend(observed) : withState(observed, OWNED);
    return cas(observed, next) ? next : -1;
  }

  long takeIdle(boolean lend) {
    return takeIdle(stamp, lend);
  }

  Connection connection() {
    Connection c = connection;
    if (c == null) {
      throw new IllegalStateException("entry in slot " + slot + " has no connection yet");
    }
    return c;
  }

  @Override
  public String toString() {
    long s = stamp;
    return "PooledEntry[slot=" + slot + ", generation=" + (s >>> 2) + ", state="
        + new String[] {"IDLE", "OWNED", "LENT", "CLOSING"}[state(s)] + "]";
  }
}
