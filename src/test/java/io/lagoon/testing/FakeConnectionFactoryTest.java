package io.lagoon.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.R2dbcTransientResourceException;
import io.r2dbc.spi.Readable;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

class FakeConnectionFactoryTest {

    private final FakeConnectionFactory factory = new FakeConnectionFactory();

    private FakeConnection connect() {
        FakeConnection c = factory.create().block(Duration.ofSeconds(5));
        assertThat(c).isNotNull();
        return c;
    }

    private static void await(org.reactivestreams.Publisher<?> publisher) {
        Flux.from(publisher).then().block(Duration.ofSeconds(5));
    }

    private static List<Object> rows(Connection c, String sql) {
        return Flux.from(c.createStatement(sql).execute())
                .concatMap(result -> result.map((row, metadata) -> row.get(0)))
                .collectList()
                .block(Duration.ofSeconds(5));
    }

    // ---------------------------------------------------------------------------------------------
    // connect and counters
    // ---------------------------------------------------------------------------------------------

    @Test
    void zeroLatencyConnectCompletesSynchronouslyOnSubscribingThread() {
        Thread caller = Thread.currentThread();
        AtomicReference<Thread> signalled = new AtomicReference<>();
        AtomicReference<FakeConnection> received = new AtomicReference<>();

        factory.create().subscribe(c -> {
            signalled.set(Thread.currentThread());
            received.set(c);
        });

        assertThat(received.get()).isNotNull();
        assertThat(signalled.get()).isSameAs(caller);
        assertThat(received.get().id()).isEqualTo(1);
        assertThat(received.get().isClosed()).isFalse();
    }

    @Test
    void createIsColdAndEachSubscriptionIsOneAttempt() {
        Mono<FakeConnection> create = factory.create();
        assertThat(factory.connectAttempts()).isZero();

        FakeConnection first = create.block();
        FakeConnection second = create.block();

        assertThat(first).isNotSameAs(second);
        assertThat(List.of(first.id(), second.id())).containsExactly(1L, 2L);
        assertThat(factory.connectAttempts()).isEqualTo(2);
        assertThat(factory.opened()).isEqualTo(2);
        assertThat(factory.open()).isEqualTo(2);
        assertThat(factory.live()).isEqualTo(2);
        assertThat(factory.maxLive()).isEqualTo(2);
        assertThat(factory.connections()).containsExactly(first, second);
        assertThat(factory.connection(2)).isSameAs(second);
    }

    @Test
    void countersTrackOpenCloseAndHighWaterMark() {
        FakeConnection a = connect();
        FakeConnection b = connect();
        FakeConnection c = connect();
        await(a.close());
        await(b.close());
        FakeConnection d = connect();

        assertThat(factory.opened()).isEqualTo(4);
        assertThat(factory.closed()).isEqualTo(2);
        assertThat(factory.open()).isEqualTo(2);
        assertThat(factory.live()).isEqualTo(2);
        assertThat(factory.maxLive()).isEqualTo(3);
        assertThat(factory.closing()).isZero();
        assertThat(a.isClosed()).isTrue();
        assertThat(a.isCloseCompleted()).isTrue();
        assertThat(c.isClosed()).isFalse();
        assertThat(d.id()).isEqualTo(4);
        assertThat(factory.connections()).containsExactly(a, b, c, d);
    }

    @Test
    void metadata() {
        assertThat(factory.getMetadata().getName()).isEqualTo("fake");
        FakeConnection c = connect();
        assertThat(c.getMetadata().getDatabaseProductName()).isEqualTo("fake");
        assertThat(c.getMetadata().getDatabaseVersion()).isEqualTo("1");
    }

    @Test
    void concurrentConnectsAndClosesKeepCountersConsistent() {
        int total = 2_000;
        int concurrency = 32;
        Flux.range(0, total)
                .flatMap(i -> Mono.usingWhen(
                                factory.create(),
                                c -> Flux.from(c.createStatement("SELECT 1").execute())
                                        .concatMap(r -> r.map((row, md) -> row.get(0)))
                                        .then(),
                                Connection::close)
                        .subscribeOn(Schedulers.parallel()), concurrency)
                .then()
                .block(Duration.ofSeconds(30));

        assertThat(factory.connectAttempts()).isEqualTo(total);
        assertThat(factory.opened()).isEqualTo(total);
        assertThat(factory.closed()).isEqualTo(total);
        assertThat(factory.open()).isZero();
        assertThat(factory.live()).isZero();
        assertThat(factory.maxLive()).isBetween(1, concurrency);
        assertThat(factory.doubleClosed()).isZero();
        assertThat(factory.usedAfterClose()).isZero();
        assertThat(factory.connections()).hasSize(total);
        assertThat(factory.connections()).extracting(FakeConnection::id).doesNotHaveDuplicates();
    }

    // ---------------------------------------------------------------------------------------------
    // latency (virtual time)
    // ---------------------------------------------------------------------------------------------

    @Test
    void connectLatencyUsesVirtualTime() {
        factory.connectLatency(Duration.ofSeconds(2));

        StepVerifier.withVirtualTime(factory::create)
                .expectSubscription()
                .expectNoEvent(Duration.ofMillis(1_999))
                .then(() -> {
                    assertThat(factory.connectsInFlight()).isEqualTo(1);
                    assertThat(factory.live()).isEqualTo(1);
                    assertThat(factory.opened()).isZero();
                })
                .thenAwait(Duration.ofMillis(1))
                .assertNext(c -> assertThat(c.id()).isEqualTo(1))
                .verifyComplete();

        assertThat(factory.connectsInFlight()).isZero();
        assertThat(factory.opened()).isEqualTo(1);
        assertThat(factory.live()).isEqualTo(1);
    }

    @Test
    void explicitSchedulerKnobIsUsedForLatency() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        factory.scheduler(vts).connectLatency(Duration.ofMillis(100));
        AtomicReference<FakeConnection> received = new AtomicReference<>();

        Disposable d = factory.create().subscribe(received::set);
        vts.advanceTimeBy(Duration.ofMillis(99));
        assertThat(received.get()).isNull();
        vts.advanceTimeBy(Duration.ofMillis(1));
        assertThat(received.get()).isNotNull();

        d.dispose();
        vts.dispose();
    }

    @Test
    void cancellingDuringLatencyIsCountedAndReleasesTheSlot() {
        factory.connectLatency(Duration.ofSeconds(1));

        StepVerifier.withVirtualTime(factory::create)
                .expectSubscription()
                .thenAwait(Duration.ofMillis(500))
                .thenCancel()
                .verify();

        assertThat(factory.cancelledConnects()).isEqualTo(1);
        assertThat(factory.connectsInFlight()).isZero();
        assertThat(factory.live()).isZero();
        assertThat(factory.maxLive()).isEqualTo(1);
        assertThat(factory.opened()).isZero();
    }

    @Test
    void closeLatencyKeepsConnectionClosingUntilItElapses() {
        FakeConnection c = connect();
        factory.closeLatency(Duration.ofSeconds(1));

        StepVerifier.withVirtualTime(c::close)
                .expectSubscription()
                .then(() -> {
                    assertThat(c.isClosed()).isTrue();
                    assertThat(c.isCloseCompleted()).isFalse();
                    assertThat(factory.closing()).isEqualTo(1);
                    assertThat(factory.live()).isEqualTo(1);
                    assertThat(factory.open()).isZero();
                })
                .expectNoEvent(Duration.ofMillis(999))
                .thenAwait(Duration.ofMillis(1))
                .verifyComplete();

        assertThat(c.isCloseCompleted()).isTrue();
        assertThat(factory.closing()).isZero();
        assertThat(factory.live()).isZero();
    }

    // ---------------------------------------------------------------------------------------------
    // connect failures
    // ---------------------------------------------------------------------------------------------

    @Test
    void failNextConnectsFailsExactlyThatMany() {
        factory.failNextConnects(2);

        StepVerifier.create(factory.create())
                .expectErrorSatisfies(e -> assertThat(e)
                        .isInstanceOf(R2dbcNonTransientResourceException.class)
                        .hasMessage("connection refused (fake)"))
                .verify();
        StepVerifier.create(factory.create()).expectError(R2dbcNonTransientResourceException.class).verify();
        StepVerifier.create(factory.create()).expectNextCount(1).verifyComplete();

        assertThat(factory.connectAttempts()).isEqualTo(3);
        assertThat(factory.failedConnects()).isEqualTo(2);
        assertThat(factory.opened()).isEqualTo(1);
        assertThat(factory.live()).isEqualTo(1);
        assertThat(factory.maxLive()).isEqualTo(1);
        assertThat(factory.connections()).singleElement().extracting(FakeConnection::id).isEqualTo(1L);
    }

    @Test
    void failConnectsFailsAllUntilTurnedOffWithCustomException() {
        factory.failConnects(true)
                .connectFailure(() -> new R2dbcTransientResourceException("too many clients", "53300"));

        for (int i = 0; i < 3; i++) {
            StepVerifier.create(factory.create())
                    .expectErrorSatisfies(e -> assertThat(e)
                            .isInstanceOf(R2dbcTransientResourceException.class)
                            .extracting(t -> ((R2dbcException) t).getSqlState())
                            .isEqualTo("53300"))
                    .verify();
        }
        factory.failConnects(false);
        StepVerifier.create(factory.create()).expectNextCount(1).verifyComplete();

        assertThat(factory.failedConnects()).isEqualTo(3);
        assertThat(factory.opened()).isEqualTo(1);
        assertThat(factory.live()).isEqualTo(1);
    }

    @Test
    void failureIsSignalledAfterLatency() {
        factory.connectLatency(Duration.ofSeconds(3)).failNextConnects(1);

        StepVerifier.withVirtualTime(factory::create)
                .expectSubscription()
                .expectNoEvent(Duration.ofSeconds(3))
                .expectError(R2dbcNonTransientResourceException.class)
                .verify();

        assertThat(factory.live()).isZero();
        assertThat(factory.maxLive()).isEqualTo(1);
        assertThat(factory.failedConnects()).isEqualTo(1);
    }

    @Test
    void hangingConnectNeverSignalsAndCancellationIsCounted() {
        factory.hangConnects(true);

        StepVerifier.withVirtualTime(factory::create)
                .expectSubscription()
                .expectNoEvent(Duration.ofDays(1))
                .then(() -> {
                    assertThat(factory.connectsInFlight()).isEqualTo(1);
                    assertThat(factory.live()).isEqualTo(1);
                })
                .thenCancel()
                .verify();

        assertThat(factory.cancelledConnects()).isEqualTo(1);
        assertThat(factory.connectsInFlight()).isZero();
        assertThat(factory.live()).isZero();
        assertThat(factory.opened()).isZero();
    }

    @Test
    void hangingConnectCancelledByTimeout() {
        factory.hangConnects(true);

        StepVerifier.withVirtualTime(() -> factory.create().timeout(Duration.ofSeconds(5)))
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(5))
                .expectError(java.util.concurrent.TimeoutException.class)
                .verify();

        assertThat(factory.cancelledConnects()).isEqualTo(1);
        assertThat(factory.live()).isZero();
    }

    @Test
    void resetRestoresDefaultKnobs() {
        factory.connectLatency(Duration.ofHours(1)).failConnects(true).failNextConnects(5).hangConnects(true)
                .hangCloses(true).closeLatency(Duration.ofHours(1))
                .connectFailure(() -> new IllegalStateException("x"));
        factory.reset();

        FakeConnection c = connect(); // synchronous, succeeds
        await(c.close()); // completes at once
        assertThat(c.isCloseCompleted()).isTrue();
        factory.failNextConnects(1);
        StepVerifier.create(factory.create()).expectErrorMessage("connection refused (fake)").verify();
    }

    // ---------------------------------------------------------------------------------------------
    // close
    // ---------------------------------------------------------------------------------------------

    @Test
    void closeIsLazyUntilSubscribed() {
        FakeConnection c = connect();
        c.close(); // not subscribed: nothing happens
        assertThat(c.isClosed()).isFalse();
        assertThat(factory.closed()).isZero();
    }

    @Test
    void doubleCloseIsCountedSeparately() {
        FakeConnection c = connect();
        await(c.close());
        await(c.close());
        await(c.close());

        assertThat(factory.closed()).isEqualTo(1);
        assertThat(factory.doubleClosed()).isEqualTo(2);
        assertThat(factory.open()).isZero();
        assertThat(factory.live()).isZero();
    }

    @Test
    void hangingCloseNeverCompletesAndStaysLive() {
        FakeConnection c = connect();
        factory.hangCloses(true);

        StepVerifier.withVirtualTime(c::close)
                .expectSubscription()
                .expectNoEvent(Duration.ofDays(1))
                .thenCancel()
                .verify();

        assertThat(c.isClosed()).isTrue();
        assertThat(c.isCloseCompleted()).isFalse();
        assertThat(factory.closed()).isEqualTo(1);
        assertThat(factory.open()).isZero();
        assertThat(factory.closing()).isEqualTo(1);
        assertThat(factory.live()).isEqualTo(1);
        assertThat(factory.cancelledCloses()).isEqualTo(1);

        // closing again completes at once and counts as a double close
        factory.hangCloses(false);
        await(c.close());
        assertThat(factory.doubleClosed()).isEqualTo(1);
        assertThat(factory.live()).isEqualTo(1);
    }

    @Test
    void useAfterCloseIsCountedAndFails() {
        FakeConnection c = connect();
        io.r2dbc.spi.Statement statementCreatedBeforeClose = c.createStatement("SELECT 1");
        await(c.close());

        assertThatThrownBy(() -> c.createStatement("SELECT 1"))
                .isInstanceOf(R2dbcNonTransientResourceException.class)
                .hasMessage("connection closed (fake)");
        assertThatThrownBy(c::createBatch).isInstanceOf(R2dbcNonTransientResourceException.class);
        assertThatThrownBy(c::isAutoCommit).isInstanceOf(R2dbcNonTransientResourceException.class);
        assertThatThrownBy(c::getTransactionIsolationLevel).isInstanceOf(R2dbcNonTransientResourceException.class);
        assertThatThrownBy(c::getMetadata).isInstanceOf(R2dbcNonTransientResourceException.class);
        assertThat(factory.usedAfterClose()).isEqualTo(5);

        StepVerifier.create(c.beginTransaction()).expectErrorMessage("connection closed (fake)").verify();
        StepVerifier.create(c.rollbackTransaction()).expectError(R2dbcNonTransientResourceException.class).verify();
        StepVerifier.create(c.setAutoCommit(true)).expectError(R2dbcNonTransientResourceException.class).verify();
        StepVerifier.create(statementCreatedBeforeClose.execute())
                .expectError(R2dbcNonTransientResourceException.class)
                .verify();
        assertThat(factory.usedAfterClose()).isEqualTo(9);

        // close and validate are not "use"; inspection methods neither
        StepVerifier.create(c.validate(ValidationDepth.LOCAL)).expectNext(false).verifyComplete();
        await(c.close());
        assertThat(c.autoCommit()).isTrue();
        assertThat(c.executedSql()).isEmpty();
        assertThat(c.operations()).isEmpty();
        assertThat(factory.usedAfterClose()).isEqualTo(9);
    }

    @Test
    void publisherObtainedBeforeCloseButSubscribedAfterCountsAsUseAfterClose() {
        FakeConnection c = connect();
        org.reactivestreams.Publisher<Void> rollback = c.rollbackTransaction();
        await(c.close());

        StepVerifier.create(rollback).expectError(R2dbcNonTransientResourceException.class).verify();
        assertThat(factory.usedAfterClose()).isEqualTo(1);
    }

    // ---------------------------------------------------------------------------------------------
    // broken connections and statement failures
    // ---------------------------------------------------------------------------------------------

    @Test
    void validateIsTrueWhileHealthy() {
        FakeConnection c = connect();
        StepVerifier.create(c.validate(ValidationDepth.LOCAL)).expectNext(true).verifyComplete();
        StepVerifier.create(c.validate(ValidationDepth.REMOTE)).expectNext(true).verifyComplete();
        assertThat(c.validations()).isEqualTo(2);
    }

    @Test
    void brokenConnectionFailsValidationAndEveryStatement() {
        FakeConnection c = connect();
        c.breakConnection();

        assertThat(c.isBroken()).isTrue();
        StepVerifier.create(c.validate(ValidationDepth.LOCAL)).expectNext(false).verifyComplete();
        StepVerifier.create(c.validate(ValidationDepth.REMOTE)).expectNext(false).verifyComplete();
        for (int i = 0; i < 2; i++) {
            StepVerifier.create(c.createStatement("SELECT 1").execute())
                    .expectErrorSatisfies(e -> assertThat(e)
                            .isInstanceOf(R2dbcNonTransientResourceException.class)
                            .hasMessage("connection broken (fake)"))
                    .verify();
        }
        StepVerifier.create(c.createBatch().add("SELECT 1").execute())
                .expectErrorMessage("connection broken (fake)")
                .verify();
        StepVerifier.create(c.rollbackTransaction()).expectErrorMessage("connection broken (fake)").verify();
        // a broken connection can still be closed
        await(c.close());
        assertThat(factory.live()).isZero();
        assertThat(factory.usedAfterClose()).isZero();
    }

    @Test
    void breakAllBreaksExistingConnectionsOnly() {
        FakeConnection a = connect();
        FakeConnection b = connect();
        factory.breakAll();
        FakeConnection later = connect();

        assertThat(a.isBroken()).isTrue();
        assertThat(b.isBroken()).isTrue();
        assertThat(later.isBroken()).isFalse();
        StepVerifier.create(b.validate(ValidationDepth.REMOTE)).expectNext(false).verifyComplete();
        StepVerifier.create(later.validate(ValidationDepth.REMOTE)).expectNext(true).verifyComplete();
    }

    @Test
    void failNextStatementFailsOnceWithTheGivenError() {
        FakeConnection c = connect();
        c.failNextStatement(new R2dbcTransientResourceException("try again"));

        StepVerifier.create(c.createStatement("SELECT 1").execute())
                .expectError(R2dbcTransientResourceException.class)
                .verify();
        assertThat(rows(c, "SELECT 1")).containsExactly(1);

        c.failNextStatement(new FakeSqlException("terminating connection due to administrator command", "57P01"));
        StepVerifier.create(c.createStatement("UPDATE t SET x = 1").execute())
                .expectErrorSatisfies(e -> {
                    assertThat(e).isInstanceOf(FakeSqlException.class).hasMessageContaining("administrator");
                    assertThat(((R2dbcException) e).getSqlState()).isEqualTo("57P01");
                })
                .verify();

        assertThat(c.executedSql()).containsExactly("SELECT 1", "SELECT 1", "UPDATE t SET x = 1");
        assertThat(c.statementsExecuted()).isEqualTo(3);
        assertThat(c.isBroken()).isFalse();
    }

    // ---------------------------------------------------------------------------------------------
    // results
    // ---------------------------------------------------------------------------------------------

    @Test
    void selectOneReturnsOneRowWithIntegerOne() {
        FakeConnection c = connect();

        StepVerifier.create(Flux.from(c.createStatement("select 1").execute())
                        .concatMap(result -> result.map((row, metadata) -> {
                            assertThat(metadata.getColumnMetadatas()).hasSize(1);
                            assertThat(metadata.getColumnMetadata(0).getJavaType()).isEqualTo(Integer.class);
                            assertThat(row.get(0, Long.class)).isEqualTo(1L);
                            assertThat(row.get(metadata.getColumnMetadata(0).getName(), Integer.class)).isEqualTo(1);
                            return row.get(0);
                        })))
                .expectNext(1)
                .verifyComplete();

        StepVerifier.create(Flux.from(c.createStatement("SELECT 1").execute())
                        .concatMap(result -> result.map((Readable readable) -> readable.get(0))))
                .expectNext(1)
                .verifyComplete();
    }

    @Test
    void selectConnectionIdReturnsTheIdOfTheConnectionItRunsOn() {
        FakeConnection first = connect();
        FakeConnection second = connect();

        assertThat(rows(first, "SELECT connection_id()")).containsExactly(first.id());
        assertThat(rows(second, "select CONNECTION_ID( );")).containsExactly(second.id());
        StepVerifier.create(Flux.from(second.createStatement("SELECT connection_id()").execute())
                        .concatMap(result -> result.map((row, metadata) -> {
                            assertThat(metadata.getColumnMetadata(0).getName()).isEqualTo("connection_id");
                            assertThat(metadata.getColumnMetadata(0).getJavaType()).isEqualTo(Long.class);
                            return row.get("connection_id", Long.class);
                        })))
                .expectNext(second.id())
                .verifyComplete();
        assertThat(first.id()).isNotEqualTo(second.id());
    }

    @Test
    void otherStatementsReturnOneResultWithNoRowsAndZeroUpdates() {
        FakeConnection c = connect();

        List<Result> results = Flux.<Result>from(c.createStatement("UPDATE t SET x = $1").bind(0, 5).execute())
                .collectList()
                .block();
        assertThat(results).hasSize(1);
        StepVerifier.create(results.get(0).getRowsUpdated()).expectNext(0L).verifyComplete();

        assertThat(rows(c, "SELECT 2")).isEmpty();
        StepVerifier.create(Flux.from(c.createStatement("SELECT 1").execute())
                        .concatMap(Result::getRowsUpdated))
                .expectNext(0L)
                .verifyComplete();
    }

    @Test
    void bindingsAreCheckedWhenCalledLikeARealDriver() {
        FakeConnection c = connect();
        String sql = "INSERT INTO t VALUES ($1, $2)";

        assertThatThrownBy(() -> c.createStatement(sql).bind(0, 1).execute())
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("$2 is not bound");
        assertThatThrownBy(() -> c.createStatement(sql).bind(0, 1).add())
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("$2 is not bound");
        assertThatThrownBy(() -> c.createStatement(sql).bind(0, 1).bind("$2", 2).add().execute())
                .as("a trailing add()")
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("$1 is not bound");
        assertThatThrownBy(() -> c.createStatement(sql).bind(2, 1))
                .isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> c.createStatement(sql).bind("$3", 1))
                .isInstanceOf(NoSuchElementException.class);
        assertThatThrownBy(() -> c.createStatement(sql).bind(0, null))
                .isInstanceOf(IllegalArgumentException.class);
        assertThat(c.statementsExecuted()).as("nothing ran").isZero();

        Flux.from(c.createStatement(sql).bind(0, 1).bindNull("$2", Integer.class).add()
                .bind(0, 3).bind(1, 4).execute()).blockLast(Duration.ofSeconds(5));
        assertThat(c.executedSql()).containsExactly(sql);
    }

    @Test
    void segmentsAndFilter() {
        FakeConnection c = connect();

        StepVerifier.create(Flux.from(c.createStatement("SELECT 1").execute())
                        .concatMap(r -> r.flatMap(segment -> Mono.just(segment instanceof Result.RowSegment))))
                .expectNext(true)
                .verifyComplete();
        StepVerifier.create(Flux.from(c.createStatement("DELETE FROM t").execute())
                        .concatMap(r -> r.flatMap(segment -> Mono.just(((Result.UpdateCount) segment).value()))))
                .expectNext(0L)
                .verifyComplete();
        StepVerifier.create(Flux.from(c.createStatement("SELECT 1").execute())
                        .concatMap(r -> r.filter(segment -> false).map((row, md) -> row.get(0))))
                .verifyComplete();
    }

    @Test
    void batchExecutesEachStatementInOrder() {
        FakeConnection c = connect();

        StepVerifier.create(c.createBatch().add("BEGIN").add("SELECT 1").add("COMMIT").execute())
                .expectNextCount(3)
                .verifyComplete();

        assertThat(c.executedSql()).containsExactly("BEGIN", "SELECT 1", "COMMIT");
        assertThat(c.isTransactionActive()).isFalse();
    }

    // ---------------------------------------------------------------------------------------------
    // session state
    // ---------------------------------------------------------------------------------------------

    @Test
    void defaultSessionState() {
        FakeConnection c = connect();
        assertThat(c.isAutoCommit()).isTrue();
        assertThat(c.autoCommit()).isTrue();
        assertThat(c.isTransactionActive()).isFalse();
        assertThat(c.getTransactionIsolationLevel()).isEqualTo(IsolationLevel.READ_COMMITTED);
        assertThat(c.statementTimeout()).isEqualTo(Duration.ZERO);
        assertThat(c.lockWaitTimeout()).isEqualTo(Duration.ZERO);
        assertThat(c.executedSql()).isEmpty();
        assertThat(c.statementsExecuted()).isZero();
    }

    @Test
    void beginCommitAndRollback() {
        FakeConnection c = connect();

        await(c.beginTransaction());
        assertThat(c.isTransactionActive()).isTrue();
        assertThat(c.isAutoCommit()).isFalse();
        assertThat(c.autoCommit()).isTrue();
        await(c.commitTransaction());
        assertThat(c.isTransactionActive()).isFalse();
        assertThat(c.isAutoCommit()).isTrue();

        await(c.beginTransaction(IsolationLevel.SERIALIZABLE));
        assertThat(c.isTransactionActive()).isTrue();
        await(c.rollbackTransaction());
        assertThat(c.isTransactionActive()).isFalse();

        assertThat(c.operations()).containsExactly("beginTransaction", "commitTransaction",
                "beginTransaction(isolation=SERIALIZABLE)", "rollbackTransaction");
    }

    @Test
    void setAutoCommitFalseStartsTransactionAndTrueEndsIt() {
        FakeConnection c = connect();

        await(c.setAutoCommit(false));
        assertThat(c.autoCommit()).isFalse();
        assertThat(c.isTransactionActive()).isTrue();
        await(c.commitTransaction());
        assertThat(c.isTransactionActive()).isFalse();
        assertThat(c.isAutoCommit()).isFalse();

        await(c.setAutoCommit(true));
        assertThat(c.autoCommit()).isTrue();
        assertThat(c.isAutoCommit()).isTrue();
        assertThat(c.isTransactionActive()).isFalse();
    }

    @Test
    void sqlBeginStartsTransactionCaseInsensitively() {
        FakeConnection c = connect();

        rows(c, "  begin isolation level serializable");
        assertThat(c.isTransactionActive()).isTrue();
        rows(c, "ROLLBACK TO SAVEPOINT s1");
        assertThat(c.isTransactionActive()).isTrue();
        rows(c, "rollback");
        assertThat(c.isTransactionActive()).isFalse();
        rows(c, "START TRANSACTION");
        assertThat(c.isTransactionActive()).isTrue();
        rows(c, "commit");
        assertThat(c.isTransactionActive()).isFalse();
        rows(c, "SELECT 1");
        assertThat(c.isTransactionActive()).isFalse();

        assertThat(c.executedSql()).containsExactly("  begin isolation level serializable",
                "ROLLBACK TO SAVEPOINT s1", "rollback", "START TRANSACTION", "commit", "SELECT 1");
        assertThat(c.statementsExecuted()).isEqualTo(6);
    }

    @Test
    void failNextCommitFailsOnceAndLeavesTransactionActive() {
        FakeConnection c = connect();
        await(c.beginTransaction());
        c.failNextCommit(new FakeSqlException("could not serialize access", "40001"));

        StepVerifier.create(c.commitTransaction())
                .expectErrorSatisfies(e -> assertThat(((R2dbcException) e).getSqlState()).isEqualTo("40001"))
                .verify();
        assertThat(c.isTransactionActive()).isTrue();

        await(c.commitTransaction());
        assertThat(c.isTransactionActive()).isFalse();
    }

    @Test
    void isolationAndTimeouts() {
        FakeConnection c = connect();

        await(c.setTransactionIsolationLevel(IsolationLevel.REPEATABLE_READ));
        await(c.setStatementTimeout(Duration.ofSeconds(5)));
        await(c.setLockWaitTimeout(Duration.ofMillis(250)));

        assertThat(c.getTransactionIsolationLevel()).isEqualTo(IsolationLevel.REPEATABLE_READ);
        assertThat(c.isolationLevel()).isEqualTo(IsolationLevel.REPEATABLE_READ);
        assertThat(c.statementTimeout()).isEqualTo(Duration.ofSeconds(5));
        assertThat(c.lockWaitTimeout()).isEqualTo(Duration.ofMillis(250));
        assertThat(c.operations()).containsExactly("setTransactionIsolationLevel(REPEATABLE READ)",
                "setStatementTimeout(PT5S)", "setLockWaitTimeout(PT0.25S)");
    }

    @Test
    void sessionSettersAreLazy() {
        FakeConnection c = connect();
        c.setAutoCommit(false);
        c.beginTransaction();
        assertThat(c.autoCommit()).isTrue();
        assertThat(c.isTransactionActive()).isFalse();
        assertThat(c.operations()).isEmpty();
    }
}
