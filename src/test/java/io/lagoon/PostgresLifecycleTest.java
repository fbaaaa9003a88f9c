package io.lagoon;

import static io.lagoon.testing.Backends.pid;
import static io.lagoon.testing.Backends.pidOf;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.Result;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** Dead, killed and dirty connections against a real PostgreSQL. */
class PostgresLifecycleTest {

  private final String app = Backends.marker("life");
  private Backends backends;
  private ConnectionPool pool;

  @BeforeEach
  void connectMonitor() {
    backends = Backends.connect();
  }

  @AfterEach
  void cleanUp() {
    if (pool != null) {
      pool.dispose();
    }
    backends.close();
  }

  /** Every physical connection the driver opened for the pool, to watch what the driver knows. */
  private final List<Connection> opened = new java.util.concurrent.CopyOnWriteArrayList<>();

  private ConnectionFactory driver() {
    ConnectionFactory real = PostgresSupport.connectionFactory(app);
    return new ConnectionFactory() {
      @Override
      public org.reactivestreams.Publisher<? extends Connection> create() {
        return Mono.from(real.create()).doOnNext(opened::add);
      }

      @Override
      public io.r2dbc.spi.ConnectionFactoryMetadata getMetadata() {
        return real.getMetadata();
      }
    };
  }

  /**
   * Waits until the driver itself reports every connection it opened as closed: the server's
   * termination reaches the client a moment after the backend is gone, and the pool's promise is
   * about connections the driver already knows are closed.
   */
  private void awaitDriverSeesAllClosed() {
    Await.driverSeesClosed("the driver noticed the kills", opened);
  }

  private void terminate(List<Integer> pids) {
    backends.terminate(app, pids, Duration.ZERO);
  }

  /** Polls the server until the condition on this pool's backends holds (server-side events). */
  private void awaitBackends(Predicate<List<Integer>> condition, String what) {
    awaitBackends("%", condition, what);
  }

  private void awaitBackends(String state, Predicate<List<Integer>> condition, String what) {
    Await.until(what, () -> condition.test(backends.pids(app, state)));
  }

  private Mono<Integer> selectOne() {
    return pool.withConnection(c -> Sql.column(c, "SELECT 1", Integer.class).single()).single();
  }

  @Test
  void afterEveryIdleConnectionIsTerminatedTheNextHundredAcquiresSucceed() {
    // The connections were used a moment ago (warmup), well within the 500 ms skip window: only
    // the local check, which runs on every borrow, stands between a borrower and a dead backend.
    pool = ConnectionPool.builder(driver()).maxSize(5).initialSize(5)
        .validationSkipWindow(Duration.ofHours(1)).poolName("pg-terminate-idle").build();
    assertThat(pool.warmup().block(Duration.ofSeconds(10))).isNotNull();
    awaitBackends(p -> p.size() == 5, "5 backends are up");
    terminate(backends.pids(app, "idle"));
    awaitBackends(List::isEmpty, "the terminated backends are gone");
    awaitDriverSeesAllClosed();

    Long ok = Flux.range(0, 100).concatMap(i -> selectOne()).count().block(Duration.ofSeconds(30));
    assertThat(ok).isEqualTo(100);
    assertThat(pool.stats().closed()).isGreaterThanOrEqualTo(5);
  }

  @Test
  void aConnectionTerminatedMidQueryFailsThatQueryIsNotReusedAndThePoolRegainsFullStrength() {
    pool = ConnectionPool.builder(driver()).maxSize(3).initialSize(3).minIdle(3)
        .poolName("pg-terminate-lent").build();
    pool.warmup().block(Duration.ofSeconds(10));
    Connection lent = pool.create().block(Duration.ofSeconds(10));
    int victimPid = pid(lent);

    Mono<Object> longQuery = Flux.from(lent.createStatement("SELECT pg_sleep(30)").execute())
        .flatMap(Result::getRowsUpdated).then(Mono.empty());
    Mono<Void> killer = Mono.fromRunnable(() -> {
      awaitBackends("active", p -> p.contains(victimPid), "the query runs");
      terminate(List.of(victimPid));
    }).subscribeOn(reactor.core.scheduler.Schedulers.boundedElastic()).then();
    Throwable failure = Mono.when(longQuery, killer).then(Mono.<Throwable>empty())
        .onErrorResume(Mono::just).block(Duration.ofSeconds(20));
    assertThat(failure).as("the query was terminated").isNotNull();

    Mono.from(lent.close()).block(Duration.ofSeconds(10));
    // full strength again: minIdle refilled, and no borrower ever gets the dead backend
    Await.until(() -> "3 idle connections: " + pool.stats(), Await.BOUND,
        () -> pool.stats().idle() == 3);
    assertThat(pool.stats().idle()).isEqualTo(3);
    List<Integer> pids = Flux.range(0, 3).flatMap(i -> pool.withConnection(
            c -> pidOf(c)), 3)
        .collectList().block(Duration.ofSeconds(10));
    assertThat(pids).doesNotContain(victimPid);
  }

  @Test
  void anIdleSessionTimeoutShorterThanThePoolsIdleTimeIsInvisibleToBorrowers() {
    pool = ConnectionPool.builder(driver()).maxSize(3).initialSize(3)
        .postAllocate(c -> Sql.updates(c, "SET idle_session_timeout = '1s'").then())
        .poolName("pg-idle-timeout").build();
    pool.warmup().block(Duration.ofSeconds(10));
    awaitBackends(p -> p.size() == 3, "3 backends are up");
    awaitBackends(List::isEmpty, "the server ended the idle sessions"); // after ~1 s
    awaitDriverSeesAllClosed();

    Long ok = Flux.range(0, 50).flatMap(i -> selectOne(), 3).count().block(Duration.ofSeconds(30));
    assertThat(ok).isEqualTo(50);
  }

  @Test
  void aBorrowerLeavesNothingBehindForTheNextBorrowerOfTheSameConnection() {
    String table = "lagoon_reset_" + UUID.randomUUID().toString().substring(0, 8);
    Sql.exec(backends.monitor(), "CREATE TABLE IF NOT EXISTS " + table + " (v int)");
    try {
      pool = ConnectionPool.builder(driver()).maxSize(1).initialSize(1).poolName("pg-reset").build();
      Connection first = pool.create().block(Duration.ofSeconds(10));
      int pid = pid(first);
      Mono.from(first.setAutoCommit(false)).block();
      Mono.from(first.setTransactionIsolationLevel(IsolationLevel.SERIALIZABLE)).block();
      Sql.exec(first, "INSERT INTO " + table + " VALUES (42)");
      Mono.from(first.close()).block(Duration.ofSeconds(10)); // no commit

      Connection second = pool.create().block(Duration.ofSeconds(10));
      try {
        assertThat(pid(second)).isEqualTo(pid);
        assertThat(second.isAutoCommit()).isTrue();
        assertThat(Sql.one(second, "SHOW transaction_isolation", String.class))
            .isEqualTo("read committed");
        assertThat(Sql.one(second, "SELECT count(*) FROM " + table, Long.class)).isZero();
      } finally {
        Mono.from(second.close()).block(Duration.ofSeconds(10));
      }
    } finally {
      Sql.exec(backends.monitor(), "DROP TABLE IF EXISTS " + table);
    }
  }
}
