package io.lagoon.internal;

import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;

/** A statement that refuses to execute once its connection went back to the pool. */
final class GuardedStatement implements Statement {

  private final PooledConnection owner;
  private final Statement delegate;

  GuardedStatement(PooledConnection owner, Statement delegate) {
    this.owner = owner;
    this.delegate = delegate;
  }

  @Override
  public Statement add() {
    delegate.add();
    return this;
  }

  @Override
  public Statement bind(int index, Object value) {
    delegate.bind(index, value);
    return this;
  }

  @Override
  public Statement bind(String name, Object value) {
    delegate.bind(name, value);
    return this;
  }

  @Override
  public Statement bindNull(int index, Class<?> type) {
    delegate.bindNull(index, type);
    return this;
  }

  @Override
  public Statement bindNull(String name, Class<?> type) {
    delegate.bindNull(name, type);
    return this;
  }

  @Override
  public Statement returnGeneratedValues(String... columns) {
    delegate.returnGeneratedValues(columns);
    return this;
  }

  @Override
  public Statement fetchSize(int rows) {
    delegate.fetchSize(rows);
    return this;
  }

  @Override
  public Publisher<? extends Result> execute() {
    try {
      owner.live("createStatement().execute");
    } catch (IllegalStateException e) {
      return Flux.error(e);
    }
    return owner.watch(delegate.execute()).map(owner::watchResult);
  }

  /** Whether SQL text may open a transaction that the borrower might leave open. */
  static boolean mayStartTransaction(String sql) {
    int i = 0;
    int n = sql.length();
    while (i < n && Character.isWhitespace(sql.charAt(i))) {
      i++;
    }
    return sql.regionMatches(true, i, "BEGIN", 0, 5) || sql.regionMatches(true, i, "START", 0, 5);
  }
}
