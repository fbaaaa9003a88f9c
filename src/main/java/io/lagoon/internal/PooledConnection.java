package io.lagoon.internal;

import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionMetadata;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.Statement;
import io.r2dbc.spi.TransactionDefinition;
import io.r2dbc.spi.ValidationDepth;
import io.r2dbc.spi.Wrapped;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.time.Duration;
import java.util.function.Function;
import org.reactivestreams.Publisher;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The connection a subscriber borrows: a handle on one lend of a pooled physical connection.
 *
 * <p>The handle is valid while its entry's stamp equals the stamp of its lend. {@link #close()}
 * returns the connection with one CAS on that stamp; a second close is a no-op. Afterwards every
 * method fails with an {@link IllegalStateException} (publishers signal it), {@code validate}
 * emits {@code false}, and nothing reaches the physical connection. Statements and batches made
 * from the handle check the same before they execute.
 *
 * <p>The handle also notes what the borrower changed ({@code dirty} bits), so the reset on
 * release touches only that, and passes every error raised through the connection to the pool,
 * which marks the connection broken when the error means it is gone.
 *
 * <p>Thread-safe as far as the driver's connection is; the pool adds no locking.
 */
final class PooledConnection implements Connection, Wrapped<Connection> {

  static final int TX = 1;
  static final int AUTO_COMMIT = 2;
  static final int ISOLATION = 4;
  static final int STATEMENT_TIMEOUT = 8;
  static final int LOCK_WAIT_TIMEOUT = 16;

  private static final VarHandle DIRTY;

  static {
    try {
      DIRTY = MethodHandles.lookup().findVarHandle(PooledConnection.class, "dirty", int.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private volatile int dirty;
  private final PoolCore core;
  private final PooledEntry entry;
  private final long stamp;

  PooledConnection(PoolCore core, PooledEntry entry, long stamp) {
    this.core = core;
    this.entry = entry;
    this.stamp = stamp;
  }

  boolean isLive() {
    return entry.stamp() == stamp;
  }

  /** The physical connection, or an error naming what was called on a dead handle. */
  Connection live(String method) {
    if (entry.stamp() != stamp) {
      throw new IllegalStateException("Connection." + method + "() called on a connection already"
          + " returned to pool '" + core.name() + "' (close() was called or the pool closed it);"
          + " acquire a new one with create()");
    }
    return entry.connection();
  }

  int dirty() {
    return dirty;
  }

  void markDirty(int bits) {
    if ((dirty & bits) != bits) {
      DIRTY.getAndBitwiseOr(this, bits);
    }
  }

  private void clearTransaction() {
    DIRTY.getAndBitwiseAnd(this, ~TX);
  }

  /** Errors raised through the connection go to the pool, which may mark it broken. */
  <T> Flux<T> watch(Publisher<T> publisher) {
    return Flux.from(publisher).doOnError(e -> core.onConnectionError(entry, e));
  }

  /** A result whose publishers also report their errors to the pool. */
  io.r2dbc.spi.Result watchResult(io.r2dbc.spi.Result result) {
    return new WatchedResult(this, result);
  }

  private <T> Publisher<T> call(String method, Function<Connection, Publisher<T>> op) {
    Connection c;
    try {
      c = live(method);
    } catch (IllegalStateException e) {
      return Mono.error(e);
    }
    return watch(op.apply(c));
  }

  @Override
  public Publisher<Void> beginTransaction() {
    markDirty(TX);
    return call("beginTransaction", Connection::beginTransaction);
  }

  @Override
  public Publisher<Void> beginTransaction(TransactionDefinition definition) {
    markDirty(TX);
    return call("beginTransaction", c -> c.beginTransaction(definition));
  }

  @Override
  public Publisher<Void> commitTransaction() {
    // Only a commit that succeeded ends the transaction: a failed one leaves TX set, so the reset
    // rolls back before anyone else sees the connection.
    return Flux.from(call("commitTransaction", Connection::commitTransaction))
        .doOnComplete(this::clearTransaction);
  }

  @Override
  public Publisher<Void> rollbackTransaction() {
    return Flux.from(call("rollbackTransaction", Connection::rollbackTransaction))
        .doOnComplete(this::clearTransaction);
  }

  @Override
  public Publisher<Void> createSavepoint(String name) {
    return call("createSavepoint", c -> c.createSavepoint(name));
  }

  @Override
  public Publisher<Void> releaseSavepoint(String name) {
    return call("releaseSavepoint", c -> c.releaseSavepoint(name));
  }

  @Override
  public Publisher<Void> rollbackTransactionToSavepoint(String name) {
    return call("rollbackTransactionToSavepoint", c -> c.rollbackTransactionToSavepoint(name));
  }

  @Override
  public Publisher<Void> setAutoCommit(boolean autoCommit) {
    markDirty(autoCommit ? AUTO_COMMIT : AUTO_COMMIT | TX);
    return call("setAutoCommit", c -> c.setAutoCommit(autoCommit));
  }

  @Override
  public Publisher<Void> setTransactionIsolationLevel(IsolationLevel level) {
    return call("setTransactionIsolationLevel", c -> {
      if (entry.initialIsolation == null) {
        entry.initialIsolation = c.getTransactionIsolationLevel();
      }
      markDirty(ISOLATION);
      return c.setTransactionIsolationLevel(level);
    });
  }

  @Override
  public Publisher<Void> setLockWaitTimeout(Duration timeout) {
    markDirty(LOCK_WAIT_TIMEOUT);
    return call("setLockWaitTimeout", c -> c.setLockWaitTimeout(timeout));
  }

  @Override
  public Publisher<Void> setStatementTimeout(Duration timeout) {
    markDirty(STATEMENT_TIMEOUT);
    return call("setStatementTimeout", c -> c.setStatementTimeout(timeout));
  }

  @Override
  public boolean isAutoCommit() {
    return live("isAutoCommit").isAutoCommit();
  }

  @Override
  public IsolationLevel getTransactionIsolationLevel() {
    return live("getTransactionIsolationLevel").getTransactionIsolationLevel();
  }

  @Override
  public ConnectionMetadata getMetadata() {
    return live("getMetadata").getMetadata();
  }

  @Override
  public Statement createStatement(String sql) {
    if (GuardedStatement.mayStartTransaction(sql)) {
      markDirty(TX);
    }
    return new GuardedStatement(this, live("createStatement").createStatement(sql));
  }

  @Override
  public Batch createBatch() {
    Batch batch = live("createBatch").createBatch();
    return new Batch() {
      @Override
      public Batch add(String sql) {
        live("createBatch().add");
        batch.add(sql);
        return this;
      }

      @Override
      public Publisher<? extends io.r2dbc.spi.Result> execute() {
        markDirty(TX); // a batch may contain BEGIN; the reset asks the driver before rolling back
        return call("createBatch().execute", c -> Flux.from(batch.execute()));
      }
    };
  }

  @Override
  public Publisher<Boolean> validate(ValidationDepth depth) {
    if (!isLive()) {
      return Mono.just(false);
    }
    return entry.connection().validate(depth);
  }

  /**
   * Returns the connection to the pool when subscribed. Completes once the pool has it back; a
   * second close, or a close of a connection the pool already reclaimed, completes at once.
   */
  @Override
  public Mono<Void> close() {
    return new Release();
  }

  /** The physical connection. Anything done to it bypasses the pool: use with care. */
  @Override
  public Connection unwrap() {
    return live("unwrap");
  }

  @Override
  public String toString() {
    return "PooledConnection[pool=" + core.name() + ", slot=" + entry.slot + ", generation="
        + (stamp >>> 2) + (isLive() ? "" : ", closed") + "]";
  }

  private final class Release extends Mono<Void> {
    @Override
    public void subscribe(CoreSubscriber<? super Void> actual) {
      core.release(entry, stamp, dirty, actual);
    }
  }
}
