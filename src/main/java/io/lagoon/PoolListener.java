package io.lagoon;

/**
 * Receives a pool's events: for meters, logs or tests. Every method has an empty default, so a
 * listener overrides only what it needs.
 *
 * <p>Register listeners with {@link ConnectionPoolBuilder#listener(PoolListener)} (they see the
 * pool's first connects) or {@link ConnectionPool#addListener(PoolListener)}. Methods are called
 * on the pool's threads, right after the event, outside any critical section, and must be fast and
 * must not block: a listener that needs I/O hands the event to a queue of its own. A listener that
 * throws does not disturb the pool: the exception is caught, logged once per listener, and the
 * pool goes on (except from {@link #onAttach}, see there). A pool without listeners pays one volatile read per event.
 *
 * <p>Durations are in nanoseconds, read from the pool's clock (the scheduler's clock under
 * reactor-test's virtual time).
 *
 * <p>Implementations must be thread-safe: events arrive concurrently from any thread.
 */
public interface PoolListener {

  /** How an acquire ({@link ConnectionPool#create()} subscription) ended. */
  enum AcquireOutcome {
    /** A connection was delivered. */
    SUCCESS,
    /** {@code maxAcquireTime} passed: {@link PoolAcquireTimeoutException}. */
    TIMEOUT,
    /** {@code maxPendingAcquires} subscribers already waited: {@link PoolExhaustedException}. */
    REJECTED,
    /** The subscriber cancelled before a connection was delivered. */
    CANCELLED,
    /**
     * Any other error: the database is down ({@link PoolUnavailableException}), the pool closed
     * ({@link PoolClosedException}), the scheduler rejected the timer.
     */
    FAILED
  }

  /** Why the pool closed a physical connection. */
  enum EvictionReason {
    /** Idle longer than {@code maxIdleTime} while more than {@code minIdle} were idle. */
    IDLE,
    /** Older than {@code maxLifeTime} (minus its jitter). */
    LIFETIME,
    /**
     * An error raised through it meant it was gone, the driver's local check found it closed, or
     * its reset on release failed.
     */
    BROKEN,
    /** It failed validation on borrow, by keepalive or after the server went away. */
    VALIDATION,
    /** {@link ConnectionPool#softEvict()}. */
    SOFT,
    /** It was lent to a handle that was garbage-collected without {@code close()}. */
    ABANDONED,
    /** The pool closed. */
    CLOSED
  }

  /**
   * Called once when the listener is attached to {@code pool}, before any other event from it. A
   * listener attached to several pools is called once per pool. If it throws, the listener is not
   * attached and the exception reaches the caller of {@link ConnectionPool#addListener} or {@link
   * ConnectionPoolBuilder#build()} (a configuration error, such as one listener for two pools).
   */
  default void onAttach(ConnectionPool pool) {}

  /**
   * An acquire ended.
   *
   * @param outcome how it ended
   * @param waitNanos how long it waited: from the moment it had to wait (queued, or took an idle
   *     connection that needed validation) to the outcome; 0 when an idle connection was lent at once
   */
  default void onAcquire(AcquireOutcome outcome, long waitNanos) {}

  /** A connection was lent to a subscriber (one per successful acquire). */
  default void onLend() {}

  /**
   * A lent connection was given back with {@code close()}.
   *
   * @param usageNanos how long it was lent
   */
  default void onReturn(long usageNanos) {}

  /**
   * A connection has been lent for longer than {@code leakDetectionThreshold}: a possible leak,
   * also logged at WARN with its borrow site. Called at most once per lend, from housekeeping;
   * never while leak detection is off.
   *
   * @param lentNanos how long it has been lent so far
   */
  default void onLeak(long lentNanos) {}

  /**
   * An attempt to open a physical connection ended (after {@code postAllocate}).
   *
   * @param success whether the connection is now in the pool
   * @param nanos how long the attempt took
   */
  default void onCreate(boolean success, long nanos) {}

  /**
   * An attempt to open a physical connection failed (refused, timed out after {@code
   * maxCreateConnectionTime}, or {@code postAllocate} failed); called after {@link #onCreate}.
   *
   * @param error the driver's error
   */
  default void onConnectFailure(Throwable error) {}

  /**
   * The pool started closing a physical connection.
   *
   * @param reason why
   */
  default void onEvict(EvictionReason reason) {}

  /**
   * No further event follows: the pool closed and every connection it held is closed (after
   * {@code close()}, lent connections close when they come back; after {@code closeGracefully},
   * at the latest when the grace ends), or the listener was removed. Meters are removed here.
   */
  default void onDetach() {}
}
