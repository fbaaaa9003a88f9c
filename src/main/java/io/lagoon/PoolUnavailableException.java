package io.lagoon;

import io.r2dbc.spi.R2dbcTransientResourceException;
import java.time.Duration;

/**
 * The acquire failed at once because the pool holds no connection and its last attempt to open one
 * failed: the database is down or unreachable. The cause is that connect error. The pool keeps
 * retrying in the background, one connect at a time with back-off, and serves acquires again as
 * soon as one succeeds. Transient: retrying later may succeed. Immutable.
 */
public final class PoolUnavailableException extends R2dbcTransientResourceException {

  private static final long serialVersionUID = 1L;

  private final transient PoolStats stats;

  public PoolUnavailableException(String poolName, long failuresInARow, Duration sinceFailure,
      Duration untilRetry, PoolStats stats, Throwable cause) {
    super("Pool '" + poolName + "': no connection, and the last attempt to open one failed "
        + sinceFailure.toMillis() + " ms ago (" + failuresInARow + " failed in a row; next attempt"
        + " in " + untilRetry.toMillis() + " ms): " + cause + " [" + stats + "]", cause);
    this.stats = stats;
  }

  /** The pool's state when the acquire failed. */
  public PoolStats stats() {
    return stats;
  }
}
