package io.lagoon;

import io.r2dbc.spi.R2dbcTimeoutException;
import java.time.Duration;
import org.jspecify.annotations.Nullable;

/**
 * No connection could be lent within {@code maxAcquireTime}. The message names the pool, the limit,
 * how long the subscriber waited and the pool's state; when opening connections failed, the last
 * failure is the cause. Immutable.
 */
public final class PoolAcquireTimeoutException extends R2dbcTimeoutException {

  private static final long serialVersionUID = 1L;

  private final transient PoolStats stats;

  public PoolAcquireTimeoutException(
      String poolName, Duration limit, Duration waited, PoolStats stats, @Nullable Throwable cause) {
    super("Pool '" + poolName + "': no connection within maxAcquireTime " + limit + " (waited "
        + waited.toMillis() + " ms" + (cause == null ? "" : "; last connect error: " + cause)
        + ") [" + stats + "]", cause);
    this.stats = stats;
  }

  /** The pool's state when the acquire timed out. */
  public PoolStats stats() {
    return stats;
  }
}
