package io.lagoon;

/**
 * When the pool undoes session state that a borrower changed through SQL ({@code SET}, {@code
 * LISTEN}, temporary tables, session advisory locks, {@code SET SESSION CHARACTERISTICS}...),
 * rather than through the connection's own methods, which the pool always restores.
 *
 * <p>On PostgreSQL the pool undoes it with one reset statement that does what {@code DISCARD ALL}
 * does except deallocating prepared statements (so the driver's statement cache stays valid), then
 * re-applies the settings the connection had when it was opened (driver options such as {@code
 * statementTimeout}, and {@code postAllocate}). On other drivers, which offer no such statement, a
 * connection whose session changed is closed and replaced instead.
 */
public enum SessionReset {

  /**
   * Reset after a borrow that ran SQL which may change the session: anything other than plain
   * queries, DML and transaction control, or a query calling {@code set_config} or a session
   * advisory lock. Costs nothing for a borrower that changed nothing. The default.
   */
  AUTO,

  /**
   * Reset after every borrow that ran any SQL, also catching changes made inside functions a query
   * calls. One extra round trip per such borrow on PostgreSQL; on other drivers the same as AUTO.
   */
  ALWAYS,

  /**
   * Never reset session state changed through SQL: only what the connection's methods changed
   * (auto-commit, isolation level, statement and lock-wait timeouts) and open transactions.
   */
  NEVER
}
