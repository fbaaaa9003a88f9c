package io.lagoon.internal;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.Result;
import java.util.Locale;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The session reset statement, per driver. Only PostgreSQL has one.
 *
 * <p>On PostgreSQL it is {@code DISCARD ALL} without {@code DEALLOCATE ALL}: the driver keeps its
 * own cache of named prepared statements and would fail on a statement the server forgot. So it
 * closes cursors, returns to the session's own role, resets every setting to its value at
 * connection start ({@code RESET ALL}), stops listening, releases session advisory locks, drops
 * cached plans, temporary tables and sequence state, deallocates the statements prepared with SQL
 * {@code PREPARE} (never the driver's, which are prepared through the protocol); then re-applies the settings the session made
 * before it was first lent (the driver's {@code statementTimeout} and {@code lockWaitTimeout}
 * options, {@code postAllocate}), read from {@code pg_settings} when the connection opened. It
 * runs as one simple-query round trip.
 */
final class SessionResets {

  static final String POSTGRES_RESET = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL;"
      + " UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP;"
      + " DISCARD SEQUENCES; DO $lagoon$DECLARE s record; BEGIN FOR s IN SELECT name FROM"
      + " pg_prepared_statements WHERE from_sql LOOP EXECUTE format('DEALLOCATE %I', s.name);"
      + " END LOOP; END$lagoon$";

  private SessionResets() {}

  static boolean isPostgres(Connection c) {
    String product = c.getMetadata().getDatabaseProductName();
    return product != null && product.toLowerCase(Locale.ROOT).contains("postgres");
  }

  /** Reads the settings this session made and builds the statement that resets to them. */
  static Mono<String> postgresResetSql(Connection c) {
    return Flux.defer(() -> c.createStatement(
                "SELECT name, setting FROM pg_settings WHERE source = 'session' ORDER BY name")
            .execute())
        .concatMap(r -> r.map((row, meta) -> "set_config(" + literal(row.get(0, String.class))
            + ", " + literal(row.get(1, String.class)) + ", false)"))
        .collectList()
        .map(sets -> sets.isEmpty() ? POSTGRES_RESET
            : POSTGRES_RESET + "; SELECT " + String.join(", ", sets));
  }

  /**
   * The session's actual default isolation level. When {@code postAllocate} changed it by SQL, the
   * driver's cached level is stale; it is set through the driver once, so that the driver and the
   * server agree and the reset on release restores the actual level. Empty when they agree.
   */
  static Mono<io.r2dbc.spi.IsolationLevel> syncIsolation(Connection c) {
    return Flux.defer(() -> c.createStatement("SHOW default_transaction_isolation").execute())
        .concatMap(r -> r.map((row, meta) -> row.get(0, String.class)))
        .next()
        .map(name -> io.r2dbc.spi.IsolationLevel.valueOf(name.toUpperCase(Locale.ROOT)))
        .filter(actual -> !actual.equals(c.getTransactionIsolationLevel()))
        .flatMap(actual -> Mono.from(c.setTransactionIsolationLevel(actual)).thenReturn(actual));
  }

  /** Runs a reset statement and drains every result it produces. */
  static Mono<Void> run(Connection c, String sql) {
    return Flux.defer(() -> c.createStatement(sql).execute())
        .concatMap(Result::getRowsUpdated)
        .then();
  }

  private static String literal(String value) {
    return value == null ? "NULL" : "'" + value.replace("'", "''") + "'";
  }
}
