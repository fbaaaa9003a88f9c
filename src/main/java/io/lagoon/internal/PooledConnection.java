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
import org.jspecify.annotations.Nullable;
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
 * emits {@code false}, and nothing reaches the physical connection.
 *
 * <p>Every publisher is lazy and decides when it is subscribed, not when the method was called:
 * a publisher obtained before {@code close()} and subscribed after it signals the error and
 * touches nothing, whoever holds the physical connection by then. Statements and batches made
 * from the handle behave the same.
 *
 * <p>The handle notes what the borrower changed ({@code dirty} bits), at the moment the change is
 * subscribed, so the reset on release touches only that; and passes every error raised through
 * the connection to the pool, which marks the connection broken when the error means it is gone.
 *
 * <p>Arguments are checked as the R2DBC SPI requires: {@code null} is an {@link
 * IllegalArgumentException}, thrown by the method itself.
 *
 * <p>Thread-safe as far as the driver's connection is; the pool adds no locking.
 */
final class PooledConnection implements Connection, Wrapped<Connection> {

  static final int TX = 1;
  static final int AUTO_COMMIT = 2;
  static final int ISOLATION = 4;
  static final int STATEMENT_TIMEOUT = 8;
  static final int LOCK_WAIT_TIMEOUT = 16;
  /** SQL ran that may have changed session state (SET, LISTEN, temp tables, locks...). */
  static final int SESSION = 32;
  /**
   * The borrower reached the physical connection through unwrap(): transaction, auto-commit and
   * isolation are compared with the initial state anyway; the session is reset where the driver
   * has a reset statement.
   */
  static final int UNWRAPPED = 64;
  /** The borrower ran SQL (any statement); only the ALWAYS session-reset mode acts on it alone. */
  static final int RAN_SQL = 128;
  /**
   * Set on release when a stream from the connection (a query's results or rows) was still open:
   * the driver may still be reading them, so the connection is replaced, never lent.
   */
  static final int STREAMING = 256;
  /**
   * SQL text started a transaction (BEGIN, START TRANSACTION). The driver may not know yet (the
   * text still on the wire, or cancelled), so the reset rolls back by SQL.
   */
  static final int TX_SQL = 512;

  private static final VarHandle DIRTY;

  static {
    try {
      DIRTY = MethodHandles.lookup().findVarHandle(PooledConnection.class, "dirty", int.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private volatile int dirty;
  /** Streams from this handle subscribed and not yet terminated or cancelled. */
  private final java.util.concurrent.atomic.AtomicInteger open =
      new java.util.concurrent.atomic.AtomicInteger();
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
    DIRTY.getAndBitwiseAnd(this, ~(TX | TX_SQL));
  }

  /**
   * Errors raised through the connection go to the pool, which may mark it broken; while the
   * stream is subscribed and not yet terminated or cancelled it counts as open (see STREAMING).
   */
  <T> Flux<T> watch(Publisher<T> publisher) {
    return new OpenStream<>(Flux.from(publisher), open,
        e -> core.lifecycle().onConnectionError(entry, e));
  }

  /**
   * A result's stream: checked against the handle when subscribed (a result obtained before
   * close() and read after it fails and touches nothing), then watched.
   */
  <T> Flux<T> watchLive(String method, java.util.function.Supplier<Publisher<T>> stream) {
    return Flux.defer(() -> {
      live(method);
      return watch(stream.get());
    });
  }

  /** A result whose publishers also report their errors to the pool. */
  io.r2dbc.spi.Result watchResult(io.r2dbc.spi.Result result) {
    return new WatchedResult(this, result);
  }

  /**
   * A lazy publisher: when subscribed, checks that the handle is still live, notes {@code bits}
   * as dirty, then runs {@code op} on the physical connection and watches its errors.
   */
  <T> Flux<T> call(String method, int bits, Function<Connection, Publisher<T>> op) {
    return Flux.defer(() -> {
      Connection c = live(method);
      markDirty(bits);
      return watch(op.apply(c));
    });
  }

  static <T> T requireArg(@Nullable T value, String name) {
    if (value == null) {
      throw new IllegalArgumentException(name + " must not be null");
    }
    return value;
  }

  @Override
  public Publisher<Void> beginTransaction() {
    return call("beginTransaction", TX, Connection::beginTransaction);
  }

  @Override
  public Publisher<Void> beginTransaction(TransactionDefinition definition) {
    requireArg(definition, "definition");
    return call("beginTransaction", TX, c -> c.beginTransaction(definition));
  }

  @Override
  public Publisher<Void> commitTransaction() {
    // Only a commit that succeeded ends the transaction: a failed one leaves TX set, so the reset
    // rolls back before anyone else sees the connection.
    return call("commitTransaction", 0, Connection::commitTransaction)
        .doOnComplete(this::clearTransaction);
  }

  @Override
  public Publisher<Void> rollbackTransaction() {
    return call("rollbackTransaction", 0, Connection::rollbackTransaction)
        .doOnComplete(this::clearTransaction);
  }

  @Override
  public Publisher<Void> createSavepoint(String name) {
    requireArg(name, "name");
    // Creating a savepoint outside a transaction starts one (SPI 1.0).
    return call("createSavepoint", TX, c -> c.createSavepoint(name));
  }

  @Override
  public Publisher<Void> releaseSavepoint(String name) {
    requireArg(name, "name");
    return call("releaseSavepoint", 0, c -> c.releaseSavepoint(name));
  }

  @Override
  public Publisher<Void> rollbackTransactionToSavepoint(String name) {
    requireArg(name, "name");
    return call("rollbackTransactionToSavepoint", 0, c -> c.rollbackTransactionToSavepoint(name));
  }

  @Override
  public Publisher<Void> setAutoCommit(boolean autoCommit) {
    return call("setAutoCommit", autoCommit ? AUTO_COMMIT : AUTO_COMMIT | TX,
        c -> c.setAutoCommit(autoCommit));
  }

  @Override
  public Publisher<Void> setTransactionIsolationLevel(IsolationLevel level) {
    requireArg(level, "isolationLevel");
    return call("setTransactionIsolationLevel", ISOLATION,
        c -> c.setTransactionIsolationLevel(level));
  }

  @Override
  public Publisher<Void> setLockWaitTimeout(Duration timeout) {
    requireArg(timeout, "timeout");
    return call("setLockWaitTimeout", LOCK_WAIT_TIMEOUT, c -> c.setLockWaitTimeout(timeout));
  }

  @Override
  public Publisher<Void> setStatementTimeout(Duration timeout) {
    requireArg(timeout, "timeout");
    return call("setStatementTimeout", STATEMENT_TIMEOUT, c -> c.setStatementTimeout(timeout));
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
    requireArg(sql, "sql");
    return new GuardedStatement(this, live("createStatement").createStatement(sql),
        SqlEffects.of(sql));
  }

  @Override
  public Batch createBatch() {
    return new GuardedBatch(this, live("createBatch").createBatch());
  }

  @Override
  public Publisher<Boolean> validate(ValidationDepth depth) {
    requireArg(depth, "depth");
    return Mono.defer(() -> isLive() ? Mono.from(entry.connection().validate(depth))
        : Mono.just(false));
  }

  /**
   * Returns the connection to the pool when subscribed. Completes once the pool has it back; a
   * second close, or a close of a connection the pool already reclaimed, completes at once.
   */
  @Override
  public Mono<Void> close() {
    return new Release();
  }

  /**
   * The physical connection. Anything done to it bypasses the handle's bookkeeping, so on release
   * the pool compares transaction, auto-commit and isolation level with the connection's initial
   * state and, on PostgreSQL, resets the session.
   */
  @Override
  public Connection unwrap() {
    Connection c = live("unwrap");
    markDirty(UNWRAPPED);
    return c;
  }

  @Override
  public String toString() {
    return "PooledConnection[pool=" + core.name() + ", slot=" + entry.slot + ", generation="
        + (stamp >>> 2) + (isLive() ? "" : ", closed") + "]";
  }

  private final class Release extends Mono<Void> {
    @Override
    public void subscribe(CoreSubscriber<? super Void> actual) {
      core.release(entry, stamp, open.get() > 0 ? dirty | STREAMING : dirty, actual);
    }
  }
}
