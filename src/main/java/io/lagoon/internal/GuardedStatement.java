package io.lagoon.internal;

import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;

/**
 * A statement that executes only while its connection is lent. {@code execute()} calls the
 * driver's {@code execute()} at once, so errors the driver raises when it is called (a parameter
 * left unbound, a trailing {@code add()}) are thrown to the caller as the driver throws them; the
 * publisher it returns is lazy and checks the handle when subscribed, so one kept past {@code
 * close()} fails and never reaches the physical connection. Notes what its SQL may change when it
 * runs, not when {@code execute()} is called.
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

  /**
   * Calls the driver's {@code execute()} now if the handle is live (throwing what it throws),
   * and returns a publisher that, when subscribed, checks the handle again, notes the statement's
   * effects and only then subscribes to the driver's publisher. On a dead handle the driver is not
   * called and the publisher signals {@link IllegalStateException}.
   */
  @Override
  public Publisher<? extends Result> execute() {
    // A dead handle never becomes live again: its publisher fails when subscribed, untouched.
    Publisher<? extends Result> executed = owner.isLive() ? delegate.execute() : Flux.empty();
    return owner.call("createStatement().execute", effects, c -> Flux.<Result>from(executed))
        .map(owner::watchResult);
  }
}
