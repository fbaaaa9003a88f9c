package io.lagoon.internal;

import static org.assertj.core.api.Assertions.assertThat;

import io.r2dbc.spi.R2dbcBadGrammarException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import org.junit.jupiter.api.Test;

/** Which errors mean that the driver's named prepared statements met a pooler in transaction mode. */
class PoolerHintsTest {

  @Test
  void recognisesTheDriversOwnStatementsAlreadyThereOrMissingEvenAsACause() {
    assertThat(PoolerHints.isPreparedStatementClash(new R2dbcBadGrammarException(
        "prepared statement \"S_0\" already exists", "42P05"))).isTrue();
    assertThat(PoolerHints.isPreparedStatementClash(new R2dbcNonTransientResourceException(
        "prepared statement \"S_12\" does not exist", "26000"))).isTrue();
    assertThat(PoolerHints.isPreparedStatementClash(new IllegalStateException("wrapped",
        new R2dbcBadGrammarException("prepared statement \"S_3\" already exists", "42P05"))))
        .isTrue();
  }

  @Test
  void ignoresStatementsPreparedWithSqlAndOtherErrors() {
    assertThat(PoolerHints.isPreparedStatementClash(new R2dbcBadGrammarException(
        "prepared statement \"mine\" already exists", "42P05"))).isFalse();
    assertThat(PoolerHints.isPreparedStatementClash(new R2dbcBadGrammarException(
        "prepared statement \"S_0\" already exists", "42601"))).isFalse();
    assertThat(PoolerHints.isPreparedStatementClash(new IllegalStateException("S_0"))).isFalse();
  }
}
