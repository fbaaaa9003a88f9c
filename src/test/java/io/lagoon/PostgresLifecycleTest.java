package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.util.retry.Retry;

/** Dead, killed and dirty connections against a real PostgreSQL. */
class PostgresLifecycleTest {

  private final String app = "lagoon-life-" + UUID.randomUUID().toString().substring(0, 8);
  private Connection monitor;
  private ConnectionPool pool;

  @BeforeEach
  void connectMonitor() {
    monitor = Mono.from(PostgresSupport.connectionFactory().create()).block(Duration.ofSeconds(10));
  }

  @AfterEach
  void cleanUp() {
    if (pool != null) {
      pool.dispose();
    }
    Mono.from(monitor.close()).block(Duration.ofSeconds(10));
  }

  /** Every physical connection the driver opened for the pool, to watch what the driver knows. */
  private final List<Connection> opened = new java.util.concurrent.CopyOnWriteArrayList<>();

  private ConnectionFactory driver() {
    ConnectionFactoryOptions options = ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl())
        .mutate().option(Option.valueOf("applicationName"), app).build();
    ConnectionFactory real = ConnectionFactories.get(options);
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
    Flux.fromIterable(opened)
        .concatMap(c -> Mono.from(c.validate(ValidationDepth.LOCAL)))
        .all(open -> !open)
        .filter(allClosed -> allClosed)
        .repeatWhenEmpty(r -> r.delayElements(Duration.ofMillis(10)).take(1000))
        .switchIfEmpty(Mono.error(new AssertionError("the driver never noticed the kills")))
        .block(Duration.ofSeconds(20));
  }

  private static <T> Mono<T> one(Connection c, String sql, Class<T> type) {
    return Flux.from(c.createStatement(sql).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, type))).single();
  }

  private Mono<List<Integer>> pids(String stateFilter) {
    return Flux.defer(() -> monitor.createStatement("SELECT pid FROM pg_stat_activity"
            + " WHERE application_name = $1 AND state LIKE $2")
        .bind("$1", app).bind("$2", stateFilter).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)))
        .collectList();
  }

  private List<Integer> backendPids(String stateFilter) {
    return pids(stateFilter).block(Duration.ofSeconds(10));
  }

  private void terminate(List<Integer> pids) {
    for (Integer pid : pids) {
      one(monitor, "SELECT pg_terminate_backend(" + pid + ")", Boolean.class)
          .block(Duration.ofSeconds(10));
    }
  }

  /** Polls the server until the condition on this pool's backends holds (server-side events). */
  private void awaitBackends(Predicate<List<Integer>> condition, String what) {
    awaitBackends("%", condition, what);
  }

  private void awaitBackends(String state, Predicate<List<Integer>> condition, String what) {
    pids(state)
        .filter(condition)
        .repeatWhenEmpty(r -> r.delayElements(Duration.ofMillis(20)).take(500))
        .switchIfEmpty(Mono.error(new AssertionError("timed out waiting until " + what)))
        .block(Duration.ofSeconds(20));
  }

  private Mono<Integer> selectOne() {
    return pool.withConnection(c -> one(c, "SELECT 1", Integer.class)).single();
  }

  @Test
  void afterEveryIdleConnectionIsTerminatedTheNextHundredAcquiresSucceed() {
    // The connections were used a moment ago (warmup), well within the 500 ms skip window: only
    // the local check, which runs on every borrow, stands between a borrower and a dead backend.
    pool = ConnectionPool.builder(driver()).maxSize(5).initialSize(5)
        .validationSkipWindow(Duration.ofHours(1)).poolName("pg-terminate-idle").build();
    assertThat(pool.warmup().block(Duration.ofSeconds(10))).isNotNull();
    awaitBackends(p -> p.size() == 5, "5 backends are up");
    terminate(backendPids("idle"));
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
    Integer victimPid = one(lent, "SELECT pg_backend_pid()", Integer.class).block();

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
    Mono.fromCallable(pool::stats).filter(s -> s.idle() == 3)
        .repeatWhenEmpty(r -> r.delayElements(Duration.ofMillis(20)).take(500))
        .block(Duration.ofSeconds(15));
    assertThat(pool.stats().idle()).isEqualTo(3);
    List<Integer> pids = Flux.range(0, 3).flatMap(i -> pool.withConnection(
            c -> one(c, "SELECT pg_backend_pid()", Integer.class)), 3)
        .collectList().block(Duration.ofSeconds(10));
    assertThat(pids).doesNotContain(victimPid);
  }

  @Test
  void anIdleSessionTimeoutShorterThanThePoolsIdleTimeIsInvisibleToBorrowers() {
    pool = ConnectionPool.builder(driver()).maxSize(3).initialSize(3)
        .postAllocate(c -> Flux.from(c.createStatement("SET idle_session_timeout = '1s'")
            .execute()).flatMap(Result::getRowsUpdated).then())
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
    Flux.from(monitor.createStatement("CREATE TABLE IF NOT EXISTS " + table + " (v int)").execute())
        .flatMap(Result::getRowsUpdated).blockLast(Duration.ofSeconds(10));
    try {
      pool = ConnectionPool.builder(driver()).maxSize(1).initialSize(1).poolName("pg-reset").build();
      Connection first = pool.create().block(Duration.ofSeconds(10));
      Integer pid = one(first, "SELECT pg_backend_pid()", Integer.class).block();
      Mono.from(first.setAutoCommit(false)).block();
      Mono.from(first.setTransactionIsolationLevel(IsolationLevel.SERIALIZABLE)).block();
      Flux.from(first.createStatement("INSERT INTO " + table + " VALUES (42)").execute())
          .flatMap(Result::getRowsUpdated).blockLast();
      Mono.from(first.close()).block(Duration.ofSeconds(10)); // no commit

      Connection second = pool.create().block(Duration.ofSeconds(10));
      try {
        assertThat(one(second, "SELECT pg_backend_pid()", Integer.class).block()).isEqualTo(pid);
        assertThat(second.isAutoCommit()).isTrue();
        assertThat(one(second, "SHOW transaction_isolation", String.class).block())
            .isEqualTo("read committed");
        assertThat(one(second, "SELECT count(*) FROM " + table, Long.class).block()).isZero();
      } finally {
        Mono.from(second.close()).block(Duration.ofSeconds(10));
      }
    } finally {
      Flux.from(monitor.createStatement("DROP TABLE IF EXISTS " + table).execute())
          .flatMap(Result::getRowsUpdated).blockLast(Duration.ofSeconds(10));
    }
  }
}
