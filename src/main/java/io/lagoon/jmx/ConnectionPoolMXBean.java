package io.lagoon.jmx;

/**
 * A pool's state and controls over JMX, registered as {@code io.lagoon:type=ConnectionPool,
 * name=<poolName>} when the pool is built with {@code registerJmx(true)} (URL option {@code
 * registerJmx=true}) and unregistered when it closes.
 *
 * <p>The attributes are those of {@link io.lagoon.PoolStats}; each read takes a fresh snapshot.
 * The pool's implementation is thread-safe.
 */
public interface ConnectionPoolMXBean {

  String getPoolName();

  int getMaxSize();

  int getAllocatedSize();

  int getIdleSize();

  int getAcquiredSize();

  int getPendingAcquireSize();

  long getAcquireCount();

  long getTimeoutCount();

  long getRejectionCount();

  long getCreatedCount();

  long getClosedCount();

  long getCreateFailureCount();

  long getUnavailableCount();

  long getAbandonedCount();

  long getLeakCount();

  /** Closes idle connections now and lent ones when they come back, then refills. */
  void softEvict();
}
