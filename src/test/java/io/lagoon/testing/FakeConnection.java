package io.lagoon.testing;

import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionMetadata;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.Statement;
import io.r2dbc.spi.TransactionDefinition;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;

/**
 * A connection of a {@link FakeConnectionFactory}.
 *
 * <p>Every {@code Publisher} returned by this class is cold: nothing happens until it is subscribed
 * to, and checks (closed, broken, one-shot failures) are made at subscription time.
 *
 * <h2>Closed connections</h2>
 *
 * A connection is closed ({@link #isClosed()}) from the moment a close is subscribed to, even if
 * that close never completes. Any SPI method other than {@code close()} and {@code validate()}
 * invoked on a closed connection (and any execution of a statement or batch of it) is counted in
 * {@link FakeConnectionFactory#usedAfterClose()} and fails with an {@link
 * R2dbcNonTransientResourceException} "connection closed (fake)": synchronous methods throw it,
 * publishers signal it. The inspection methods that are not part of the SPI ({@link #id()}, {@link
 * #autoCommit()}, {@link #executedSql()}, ...) never count.
 *
 * <h2>Broken connections</h2>
 *
 * After {@link #breakConnection()}, {@code validate} emits {@code false} and every server round trip
 * (statement and batch executions, and also begin/commit/rollback, savepoints and the session
 * setters) fails with {@link R2dbcNonTransientResourceException} "connection broken (fake)".
 *
 * <h2>Session state</h2>
 *
 * Auto-commit (default {@code true}), an active-transaction flag, isolation level (default READ
 * COMMITTED), statement timeout and lock wait timeout (default {@link Duration#ZERO}, meaning none).
 * A transaction is started by {@code beginTransaction}, {@code setAutoCommit(false)}, {@code
 * createSavepoint} and by executing SQL starting with {@code BEGIN} or {@code START TRANSACTION};
 * it is ended by {@code commitTransaction}, {@code rollbackTransaction}, {@code setAutoCommit(true)}
 * and by executing SQL starting with {@code COMMIT}, {@code END}, {@code ABORT} or {@code ROLLBACK}
 * (but not {@code ROLLBACK TO ...}). A failed commit ({@link #failNextCommit}) leaves the
 * transaction active. Executing other SQL never starts a transaction implicitly, whatever the
 * auto-commit mode.
 */
public final class FakeConnection implements Connection {

    private static final ConnectionMetadata METADATA = new ConnectionMetadata() {
        @Override
        public String getDatabaseProductName() {
            return "fake";
        }

        @Override
        public String getDatabaseVersion() {
            return "1";
        }
    };

    private enum State { OPEN, CLOSING, CLOSED }

    private final FakeConnectionFactory factory;
    private final long id;
    private final AtomicReference<State> state = new AtomicReference<>(State.OPEN);
    private volatile boolean broken;
    private volatile boolean hangValidation;
    private final java.util.concurrent.atomic.AtomicReference<ValidationDepth> lastValidationDepth =
            new java.util.concurrent.atomic.AtomicReference<>();
    private final AtomicReference<Throwable> failNextStatement = new AtomicReference<>();
    private final AtomicReference<Throwable> failNextCommit = new AtomicReference<>();

    private volatile boolean autoCommit = true;
    private volatile boolean transactionActive;
    private volatile IsolationLevel isolationLevel = IsolationLevel.READ_COMMITTED;
    private volatile Duration statementTimeout = Duration.ZERO;
    private volatile Duration lockWaitTimeout = Duration.ZERO;

    private final Queue<String> executedSql = new ConcurrentLinkedQueue<>();
    private final AtomicInteger statementsExecuted = new AtomicInteger();
    private final Queue<String> operations = new ConcurrentLinkedQueue<>();
    private final AtomicInteger validations = new AtomicInteger();

    private final Queue<String> history = new ConcurrentLinkedQueue<>();

    /** Records a moment of this connection's life: what, on which thread, at which nanoTime. */
    void note(String what) {
        history.add(what + " on " + Thread.currentThread().getName() + " at " + System.nanoTime());
    }

    /** The moments {@link #note} recorded, for a test's failure message. */
    public List<String> history() {
        return List.copyOf(history);
    }

    FakeConnection(FakeConnectionFactory factory, long id) {
        this.factory = factory;
        this.id = id;
    }

    // ------------------------------------------------------------------------------------------
    // knobs and inspection (not SPI; never counted as use after close)
    // ------------------------------------------------------------------------------------------

    /** 1, 2, 3, ... in order of opening, per factory. */
    public long id() {
        return id;
    }

    public FakeConnectionFactory factory() {
        return factory;
    }

    /** {@code true} once a close has been subscribed to (even if it has not completed). */
    public boolean isClosed() {
        return state.get() != State.OPEN;
    }

    /** {@code true} once a close has completed. */
    public boolean isCloseCompleted() {
        return state.get() == State.CLOSED;
    }

    /** Makes validation report {@code false} and every server round trip fail from now on. */
    public FakeConnection breakConnection() {
        broken = true;
        return this;
    }

    public boolean isBroken() {
        return broken;
    }

    /** Makes the next statement (or batch entry) executed fail with {@code error}, once. */
    public FakeConnection failNextStatement(Throwable error) {
        failNextStatement.set(Objects.requireNonNull(error, "error"));
        return this;
    }

    /** Makes the next {@code commitTransaction()} fail with {@code error}, once; the transaction stays active. */
    public FakeConnection failNextCommit(Throwable error) {
        failNextCommit.set(Objects.requireNonNull(error, "error"));
        return this;
    }

    /** The auto-commit mode as last set (the SPI {@link #isAutoCommit()} is also false inside a transaction). */
    public boolean autoCommit() {
        return autoCommit;
    }

    public boolean isTransactionActive() {
        return transactionActive;
    }

    public IsolationLevel isolationLevel() {
        return isolationLevel;
    }

    public Duration statementTimeout() {
        return statementTimeout;
    }

    public Duration lockWaitTimeout() {
        return lockWaitTimeout;
    }

    /**
     * Every SQL string whose execution was attempted on this connection while it was not closed,
     * including executions that then failed (broken connection, {@link #failNextStatement}).
     */
    public List<String> executedSql() {
        return List.copyOf(executedSql);
    }

    /** Number of entries in {@link #executedSql()}. */
    public int statementsExecuted() {
        return statementsExecuted.get();
    }

    /**
     * The non-statement round trips attempted while not closed, in order, for example {@code
     * "beginTransaction"}, {@code "commitTransaction"}, {@code "rollbackTransaction"}, {@code
     * "setAutoCommit(true)"}, {@code "setTransactionIsolationLevel(SERIALIZABLE)"}, {@code
     * "setStatementTimeout(PT5S)"}, {@code "setLockWaitTimeout(PT1S)"}, {@code "createSavepoint(s1)"}.
     */
    public List<String> operations() {
        return List.copyOf(operations);
    }

    /** Number of {@code validate} subscriptions. */
    public int validations() {
        return validations.get();
    }

    // ------------------------------------------------------------------------------------------
    // Connection SPI
    // ------------------------------------------------------------------------------------------

    @Override
    public Mono<Void> beginTransaction() {
        return roundTrip("beginTransaction", () -> transactionActive = true);
    }

    @Override
    public Mono<Void> beginTransaction(TransactionDefinition definition) {
        Objects.requireNonNull(definition, "definition");
        return roundTrip("beginTransaction(" + describe(definition) + ")", () -> transactionActive = true);
    }

    @Override
    public Mono<Void> commitTransaction() {
        return Mono.defer(() -> {
            Mono<Void> refused = refuse("commitTransaction");
            if (refused != null) {
                return refused;
            }
            Throwable error = failNextCommit.getAndSet(null);
            if (error != null) {
                return Mono.error(error);
            }
            transactionActive = false;
            return Mono.empty();
        });
    }

    @Override
    public Mono<Void> rollbackTransaction() {
        return roundTrip("rollbackTransaction", () -> transactionActive = false);
    }

    @Override
    public Mono<Void> setAutoCommit(boolean autoCommit) {
        return roundTrip("setAutoCommit(" + autoCommit + ")", () -> {
            this.autoCommit = autoCommit;
            // false begins a transaction; true commits the current one (as the SPI specifies)
            transactionActive = !autoCommit;
        });
    }

    @Override
    public boolean isAutoCommit() {
        checkUsable();
        return autoCommit && !transactionActive;
    }

    @Override
    public IsolationLevel getTransactionIsolationLevel() {
        checkUsable();
        return isolationLevel;
    }

    @Override
    public Mono<Void> setTransactionIsolationLevel(IsolationLevel level) {
        Objects.requireNonNull(level, "level");
        return roundTrip("setTransactionIsolationLevel(" + level.asSql() + ")", () -> isolationLevel = level);
    }

    @Override
    public Mono<Void> setStatementTimeout(Duration timeout) {
        Objects.requireNonNull(timeout, "timeout");
        return roundTrip("setStatementTimeout(" + timeout + ")", () -> statementTimeout = timeout);
    }

    @Override
    public Mono<Void> setLockWaitTimeout(Duration timeout) {
        Objects.requireNonNull(timeout, "timeout");
        return roundTrip("setLockWaitTimeout(" + timeout + ")", () -> lockWaitTimeout = timeout);
    }

    @Override
    public Mono<Void> createSavepoint(String name) {
        return roundTrip("createSavepoint(" + name + ")", () -> transactionActive = true);
    }

    @Override
    public Mono<Void> releaseSavepoint(String name) {
        return roundTrip("releaseSavepoint(" + name + ")", () -> { });
    }

    @Override
    public Mono<Void> rollbackTransactionToSavepoint(String name) {
        return roundTrip("rollbackTransactionToSavepoint(" + name + ")", () -> { });
    }

    @Override
    public Statement createStatement(String sql) {
        Objects.requireNonNull(sql, "sql");
        checkUsable();
        return new FakeStatement(this, sql);
    }

    @Override
    public Batch createBatch() {
        checkUsable();
        return new FakeBatch(this);
    }

    @Override
    public ConnectionMetadata getMetadata() {
        checkUsable();
        return METADATA;
    }

    /** Emits {@code true} unless the connection is broken or closed; never, with hangValidation. */
    @Override
    public Mono<Boolean> validate(ValidationDepth depth) {
        Objects.requireNonNull(depth, "depth");
        return Mono.defer(() -> {
            validations.incrementAndGet();
            lastValidationDepth.set(depth);
            return hangValidation ? Mono.<Boolean>never() : Mono.just(!broken && !isClosed());
        });
    }

    /** Makes validate() never answer (a server that stopped responding). */
    public FakeConnection hangValidation(boolean hang) {
        hangValidation = hang;
        return this;
    }

    /** The depth of the last validate() call, or null. */
    public ValidationDepth lastValidationDepth() {
        return lastValidationDepth.get();
    }

    /**
     * Starts closing on subscription, see {@link FakeConnectionFactory}. With {@code hangCloses}
     * the returned publisher never completes; with a close latency it completes after it. Cancelling
     * a close with latency does not stop it: the connection still becomes closed after the latency.
     */
    @Override
    public Mono<Void> close() {
        return Mono.defer(() -> {
            if (!state.compareAndSet(State.OPEN, State.CLOSING)) {
                factory.onDoubleClose();
                return Mono.empty();
            }
            factory.onCloseStarted();
            if (factory.hangClosesKnob()) {
                return Mono.<Void>never().doOnCancel(factory::onCloseCancelled);
            }
            Duration latency = factory.closeLatencyKnob();
            if (latency.isZero() || latency.isNegative()) {
                completeClose();
                return Mono.empty();
            }
            Sinks.Empty<Void> done = Sinks.empty();
            Mono.delay(latency, factory.currentScheduler()).subscribe(tick -> {
                completeClose();
                done.tryEmitEmpty();
            });
            return done.asMono().doOnCancel(factory::onCloseCancelled);
        });
    }

    private void completeClose() {
        if (state.compareAndSet(State.CLOSING, State.CLOSED)) {
            factory.onCloseCompleted();
        }
    }

    // ------------------------------------------------------------------------------------------
    // internals
    // ------------------------------------------------------------------------------------------

    /** Executes one SQL string; called by statements and batches at subscription time. */
    Mono<FakeResult> execute(String sql) {
        return Mono.defer(() -> {
            if (isClosed()) {
                factory.onUsedAfterClose();
                return Mono.error(closedError());
            }
            executedSql.add(sql);
            statementsExecuted.incrementAndGet();
            if (broken) {
                return Mono.error(brokenError());
            }
            Throwable error = failNextStatement.getAndSet(null);
            if (error != null) {
                return Mono.error(error);
            }
            applySessionEffects(sql);
            return Mono.just(new FakeResult(sql, id));
        });
    }

    /** Counts and throws if closed; for the synchronous SPI methods. */
    private void checkUsable() {
        if (isClosed()) {
            factory.onUsedAfterClose();
            throw closedError();
        }
    }

    private void applySessionEffects(String sql) {
        String s = sql.stripLeading().toUpperCase(Locale.ROOT);
        if (s.startsWith("BEGIN") || s.startsWith("START TRANSACTION")) {
            transactionActive = true;
        } else if (s.startsWith("COMMIT") || s.startsWith("END") || s.startsWith("ABORT")
                || (s.startsWith("ROLLBACK") && !s.matches("(?s)ROLLBACK\\s+(WORK\\s+|TRANSACTION\\s+)?TO\\b.*"))) {
            transactionActive = false;
        }
    }

    private Mono<Void> roundTrip(String operation, Runnable effect) {
        return Mono.defer(() -> {
            Mono<Void> refused = refuse(operation);
            if (refused != null) {
                return refused;
            }
            effect.run();
            return Mono.empty();
        });
    }

    /** Records the operation, or returns the error to signal if closed (not recorded) or broken. */
    private Mono<Void> refuse(String operation) {
        if (isClosed()) {
            factory.onUsedAfterClose();
            return Mono.error(closedError());
        }
        operations.add(operation);
        if (broken) {
            return Mono.error(brokenError());
        }
        return null;
    }

    private static R2dbcNonTransientResourceException closedError() {
        return new R2dbcNonTransientResourceException("connection closed (fake)");
    }

    private static R2dbcNonTransientResourceException brokenError() {
        return new R2dbcNonTransientResourceException("connection broken (fake)");
    }

    private static String describe(TransactionDefinition definition) {
        List<String> parts = new ArrayList<>();
        IsolationLevel level = definition.getAttribute(TransactionDefinition.ISOLATION_LEVEL);
        if (level != null) {
            parts.add("isolation=" + level.asSql());
        }
        Boolean readOnly = definition.getAttribute(TransactionDefinition.READ_ONLY);
        if (readOnly != null) {
            parts.add("readOnly=" + readOnly);
        }
        String name = definition.getAttribute(TransactionDefinition.NAME);
        if (name != null) {
            parts.add("name=" + name);
        }
        Duration lockWait = definition.getAttribute(TransactionDefinition.LOCK_WAIT_TIMEOUT);
        if (lockWait != null) {
            parts.add("lockWaitTimeout=" + lockWait);
        }
        return String.join(", ", parts);
    }

    @Override
    public String toString() {
        return "FakeConnection{id=" + id + ", state=" + state.get() + (broken ? ", broken" : "")
                + ", autoCommit=" + autoCommit + ", transactionActive=" + transactionActive + "}";
    }
}
