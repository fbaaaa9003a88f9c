package io.lagoon.internal;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The SQL text classifier: what it must see through, and what it must leave alone. */
class SqlEffectsTest {

  private static boolean session(String sql) {
    return (SqlEffects.of(sql) & PooledConnection.SESSION) != 0;
  }

  @ParameterizedTest
  @ValueSource(strings = {
      "SELECT 1", "select * from t where name = 'SET search_path'", "INSERT INTO t VALUES (1)",
      "insert into t select * from u", "UPDATE t SET a = 1", "DELETE FROM t",
      "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "SELECT LAST_INSERT_ID()",
      "SELECT 'a;SET x=1' AS s", "-- SET search_path\nSELECT 1", "SELECT /* into */ 1",
      "SELECT $q$ INTO TEMP t $q$", "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
      "INSERT IGNORE INTO t VALUES (1)", "(SELECT 1) UNION (SELECT 2)", "COMMIT", "SHOW search_path"
  })
  void plainDataStatementsLeaveTheSessionAlone(String sql) {
    assertThat(session(sql)).as(sql).isFalse();
    assertThat(SqlEffects.of(sql) & PooledConnection.RAN_SQL).isNotZero();
  }

  @ParameterizedTest
  @ValueSource(strings = {
      "SET search_path = x", "/* c */ SET x = 1", "  set local x = 1", "SELECT 1; SET x = 1",
      "SELECT ';'; SET x = 1", "SELECT 'insert' AS w INTO TEMP t", "SELECT ';insert' AS w INTO TEMP t",
      "SELECT 1 INTO @v", "SELECT @v := 1", "SELECT LAST_INSERT_ID(42)", "SELECT GET_LOCK('x', 0)",
      "SELECT nextval('s')", "UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
      "SELECT set_config('a.b', 'c', false)", "SELECT pg_advisory_lock(1)", "LISTEN ch",
      "CREATE TEMP TABLE t (a int)", "PREPARE p AS SELECT 1", "DO $$BEGIN END$$", "CALL p()",
      "SELECT 'a\\'; SET x = 1"
  })
  void sqlThatMayChangeTheSessionIsSeen(String sql) {
    assertThat(session(sql)).as(sql).isTrue();
  }

  @ParameterizedTest
  @ValueSource(strings = {"BEGIN", "start transaction", "BEGIN; INSERT INTO t VALUES (1)"})
  void transactionsStartedByTextAreRolledBackBySql(String sql) {
    assertThat(SqlEffects.of(sql) & PooledConnection.TX_SQL).as(sql).isNotZero();
  }
}
