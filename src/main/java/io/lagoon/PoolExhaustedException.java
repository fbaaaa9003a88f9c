package io.lagoon;

import io.r2dbc.spi.R2dbcTransientResourceException;

/**
 * The acquire was refused at once because {@code maxPendingAcquires} subscribers were already
 * waiting. Transient: retrying later may succeed. Immutable.
 */
public final class PoolExhaustedException extends R2dbcTransientResourceException {

  private static final long serialVersionUID = 1L;

  private final transient PoolStats stats;

  public PoolExhaustedException(String poolName, int maxPendingAcquires, PoolStats stats) {
    super("Pool '" + poolName + "': pending queue is full (maxPendingAcquires " + maxPendingAcquires
        + "), acquire refused [" + stats + "]");
    this.stats = stats;
  }

  /** The pool's state when the acquire was refused. */
  public PoolStats stats() {
    return stats;
  }
}
