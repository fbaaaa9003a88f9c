package io.lagoon;

import io.r2dbc.spi.R2dbcNonTransientResourceException;

/**
 * The pool is closed: the acquire was refused, or the subscriber was waiting when it closed.
 * Immutable.
 */
public final class PoolClosedException extends R2dbcNonTransientResourceException {

  private static final long serialVersionUID = 1L;

  private final transient PoolStats stats;

  public PoolClosedException(String poolName, String what, PoolStats stats) {
    super("Pool '" + poolName + "' is closed: " + what + " [" + stats + "]");
    this.stats = stats;
  }

  /** The pool's state when the acquire failed. */
  public PoolStats stats() {
    return stats;
  }
}
