package io.lagoon.benchmarks.support;

import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionMetadata;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.Statement;
import io.r2dbc.spi.TransactionDefinition;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import reactor.core.publisher.Mono;

/**
 * A connection of {@link StubConnectionFactory}: {@link #close()} is {@code Mono.empty()}, {@link
 * #validate} emits {@code true} (r2dbc-pool validates every connection it lends; the emitted
 * {@code Mono} is a shared constant so the stub allocates nothing), transaction methods complete
 * empty. Statements are not supported: these benchmarks measure the pool, not the driver.
 */
public final class StubConnection implements Connection {

  private static final Mono<Boolean> VALID = Mono.just(true);
  private static final ConnectionMetadata METADATA = new ConnectionMetadata() {
    @Override
    public String getDatabaseProductName() {
      return "stub";
    }

    @Override
    public String getDatabaseVersion() {
      return "0";
    }
  };

  private volatile boolean autoCommit = true;

  @Override
  public Mono<Void> close() {
    return Mono.empty();
  }

  @Override
  public Mono<Boolean> validate(ValidationDepth depth) {
    return VALID;
  }

  @Override
  public Mono<Void> beginTransaction() {
    return Mono.empty();
  }

  @Override
  public Mono<Void> beginTransaction(TransactionDefinition definition) {
    return Mono.empty();
  }

  @Override
  public Mono<Void> commitTransaction() {
    return Mono.empty();
  }

  @Override
  public Mono<Void> rollbackTransaction() {
    return Mono.empty();
  }

  @Override
  public Mono<Void> createSavepoint(String name) {
    return Mono.empty();
  }

  @Override
  public Mono<Void> releaseSavepoint(String name) {
    return Mono.empty();
  }

  @Override
  public Mono<Void> rollbackTransactionToSavepoint(String name) {
    return Mono.empty();
  }

  @Override
  public Mono<Void> setAutoCommit(boolean autoCommit) {
    return Mono.fromRunnable(() -> this.autoCommit = autoCommit);
  }

  @Override
  public Mono<Void> setLockWaitTimeout(Duration timeout) {
    return Mono.empty();
  }

  @Override
  public Mono<Void> setStatementTimeout(Duration timeout) {
    return Mono.empty();
  }

  @Override
  public Mono<Void> setTransactionIsolationLevel(IsolationLevel level) {
    return Mono.empty();
  }

  @Override
  public boolean isAutoCommit() {
    return autoCommit;
  }

  @Override
  public IsolationLevel getTransactionIsolationLevel() {
    return IsolationLevel.READ_COMMITTED;
  }

  @Override
  public ConnectionMetadata getMetadata() {
    return METADATA;
  }

  @Override
  public Statement createStatement(String sql) {
    throw new UnsupportedOperationException("the stub driver runs no SQL");
  }

  @Override
  public Batch createBatch() {
    throw new UnsupportedOperationException("the stub driver runs no SQL");
  }
}
