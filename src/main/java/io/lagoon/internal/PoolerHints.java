package io.lagoon.internal;

import io.r2dbc.spi.R2dbcException;
import java.util.concurrent.atomic.AtomicBoolean;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * Recognises errors that mean a pooler in transaction mode sits between the pool and PostgreSQL
 * (PgBouncer before 1.21, or without {@code max_prepared_statements}) and the driver caches named
 * prepared statements, which such a pooler moves between server connections: {@code [42P05]
 * prepared statement "S_0" already exists} or {@code [26000] prepared statement "S_1" does not
 * exist}. Nothing at connect time tells such a pooler from PostgreSQL itself (it reports the
 * server's version and parameters), so the first such error logs one warning per pool naming the
 * fix. Thread-safe.
 */
final class PoolerHints {

  private static final Logger LOG = Loggers.getLogger(PoolerHints.class);

  private final String poolName;
  private final AtomicBoolean warned = new AtomicBoolean();

  PoolerHints(String poolName) {
    this.poolName = poolName;
  }

  /** Logs the hint the first time an error of this kind comes through the pool. */
  void onError(Throwable error) {
    if (!warned.get() && isPreparedStatementClash(error) && warned.compareAndSet(false, true)) {
      LOG.warn("Pool '{}': {} -- the driver's named prepared statements met a connection pooler in"
          + " transaction mode (PgBouncer before 1.21 does not support them). With"
          + " r2dbc-postgresql, add preparedStatementCacheQueries=0 to the URL; or run the pooler"
          + " in session mode. Logged once per pool.", poolName, error.getMessage());
    }
  }

  /** 42P05 or 26000 about one of the statements the driver prepared and named itself. */
  static boolean isPreparedStatementClash(Throwable error) {
    for (Throwable t = error; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof R2dbcException r) {
        String state = r.getSqlState();
        String message = String.valueOf(r.getMessage());
        if (("42P05".equals(state) || "26000".equals(state))
            && message.contains("prepared statement \"S_")) {
          return true;
        }
      }
    }
    return false;
  }
}
