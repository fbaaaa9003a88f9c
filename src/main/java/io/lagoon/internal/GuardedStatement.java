package io.lagoon.internal;

import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;

/**
 * A statement that executes only while its connection is lent: {@code execute()} is lazy and
 * checks the handle when subscribed. Notes what its SQL may change when it runs.
 */
final class GuardedStatement implements Statement {

  private final PooledConnection owner;
  private final Statement delegate;
  private final int effects;

  GuardedStatement(PooledConnection owner, Statement delegate, int effects) {
    this.owner = owner;
    this.delegate = delegate;
    this.effects = effects;
  }

  @Override
  public Statement add() {
    delegate.add();
    return this;
  }

  @Override
  public Statement bind(int index, Object value) {
    PooledConnection.requireArg(value, "value");
    delegate.bind(index, value);
    return this;
  }

  @Override
  public Statement bind(String name, Object value) {
    PooledConnection.requireArg(name, "name");
    PooledConnection.requireArg(value, "value");
    delegate.bind(name, value);
    return this;
  }

  @Override
  public Statement bindNull(int index, Class<?> type) {
    PooledConnection.requireArg(type, "type");
    delegate.bindNull(index, type);
    return this;
  }

  @Override
  public Statement bindNull(String name, Class<?> type) {
    PooledConnection.requireArg(name, "name");
    PooledConnection.requireArg(type, "type");
    delegate.bindNull(name, type);
    return this;
  }

  @Override
  public Statement returnGeneratedValues(String... columns) {
    PooledConnection.requireArg(columns, "columns");
    delegate.returnGeneratedValues(columns);
    return this;
  }

  @Override
  public Statement fetchSize(int rows) {
    if (rows < 0) {
      throw new IllegalArgumentException("fetchSize (" + rows + ") must not be negative");
    }
    delegate.fetchSize(rows);
    return this;
  }

  @Override
  public Publisher<? extends Result> execute() {
    return owner.call("createStatement().execute", effects, c -> Flux.<Result>from(delegate.execute()))
        .map(owner::watchResult);
  }
}
