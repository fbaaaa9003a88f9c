package io.lagoon;

import static io.lagoon.testing.Sql.bound;
import static io.lagoon.testing.Sql.column;
import static io.lagoon.testing.Sql.text;
import static io.lagoon.testing.Sql.updates;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.testing.Await;
import io.lagoon.testing.CapturedLogs;
import io.lagoon.testing.LoadLoops;
import io.lagoon.testing.PgBouncer;
import io.lagoon.testing.PgBouncer.Mode;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Scenario 7: the pool through PgBouncer 1.18, in session and in transaction mode. Queries,
 * transactions, validation, reset on release, and a PgBouncer restart survived; in transaction
 * mode, r2dbc-postgresql's prepared-statement cache and the setting that makes it work.
 */
class PgBouncerPoolTest {

  private static final Duration BOUND = Duration.ofSeconds(30);
  /** The driver setting that works through PgBouncer in transaction mode. */
  private static final Option<String> STATEMENT_CACHE =
      Option.valueOf("preparedStatementCacheQueries");

  private final String app = "lagoon-pgb-" + UUID.randomUUID().toString().substring(0, 8);
  private final String table = "lagoon_pgb_" + UUID.randomUUID().toString().substring(0, 8);
  private final List<ConnectionPool> pools = new CopyOnWriteArrayList<>();
  private final List<Connection> opened = new CopyOnWriteArrayList<>();
  private PgBouncer bouncer;

  @BeforeEach
  void createTable() {
    direct("CREATE TABLE " + table + " (v int)");
  }

  @AfterEach
  void tearDown() {
    pools.forEach(ConnectionPool::dispose);
    if (bouncer != null) {
      bouncer.close();
    }
    direct("DROP TABLE IF EXISTS " + table);
  }

  // ---------------------------------------------------------------- both modes

  @ParameterizedTest
  @EnumSource(Mode.class)
  void queriesTransactionsAndValidationWork(Mode mode) {
    bouncer = PgBouncer.start(mode, serverConnections(mode));
    ConnectionPool pool = pool(mode, b -> b.maxSize(10).validationQuery("SELECT 1")
        .validationSkipWindow(Duration.ZERO));

    assertThat(pool.withConnection(c -> column(c, "SELECT 41 + 1", Integer.class)).blockLast(BOUND))
        .isEqualTo(42);
    pool.inTransaction(c -> updates(c, "INSERT INTO " + table + " VALUES (1)")).blockLast(BOUND);
    assertThatThrownBy(() -> pool.inTransaction(c -> updates(c, "INSERT INTO " + table
        + " VALUES (2)").thenMany(Flux.error(new IllegalStateException("abort")))).blockLast(BOUND))
        .hasMessage("abort");
    assertThat(countRows()).as("the commit is kept, the failed transaction rolled back").isEqualTo(1);

    // every borrow validated with a round trip through PgBouncer; none failed
    Flux.range(0, 200)
        .flatMap(i -> pool.withConnection(c -> column(c, "SELECT 1", Integer.class)), 32)
        .blockLast(BOUND);
    assertThat(pool.stats().created()).as("no connection was replaced").isEqualTo(10);
    assertThat(pool.stats().createFailures()).isZero();
  }

  @ParameterizedTest
  @EnumSource(Mode.class)
  void underLoadAPgBouncerRestartIsSurvived(Mode mode) {
    bouncer = PgBouncer.start(mode, serverConnections(mode));
    ConnectionPool pool = pool(mode, b -> b.maxSize(10).maxAcquireTime(Duration.ofSeconds(2)));
    LoadLoops load = LoadLoops.builder(pool).maxLoggedFailures(Integer.MAX_VALUE).start();
    try {
      ScenarioSupport.phase(Duration.ofSeconds(2));
      long steadyFrom = System.nanoTime() - Duration.ofMillis(1500).toNanos();
      double steady = load.opsPerSecondBetween(steadyFrom, System.nanoTime());
      int before = opened.size();

      long restartStart = System.nanoTime();
      bouncer.restart();
      long listening = System.nanoTime();
      Await.driverSeesClosed("the driver saw PgBouncer go away", opened.subList(0, before));
      // the pool is down until its background connect finds PgBouncer again: wait for that
      Flux.defer(() -> pool.withConnection(c -> column(c, "SELECT 1", Integer.class)))
          .retryWhen(reactor.util.retry.Retry.fixedDelay(Long.MAX_VALUE, Duration.ofMillis(25)))
          .timeout(Await.BOUND, Flux.error(() -> new AssertionError("the pool served nothing"
              + " within " + Await.BOUND.toSeconds() + " s of PgBouncer's restart: " + pool.stats())))
          .blockLast(Await.BOUND.plusSeconds(5));
      // from then on, with every old connection seen dropped: 100 in a row succeed
      for (int i = 0; i < 100; i++) {
        assertThat(pool.withConnection(c -> column(c, "SELECT 1", Integer.class)).blockLast(BOUND))
            .isEqualTo(1);
      }
      ScenarioSupport.phase(Duration.ofSeconds(1));
      load.stop(Duration.ofSeconds(10));

      long firstOk = load.firstSuccessAfter(listening);
      List<LoadLoops.Failure> failures = load.failureLog();
      long recoveryMs = LoadLoops.ms(firstOk - listening);
      System.out.printf("[reliability] pgbouncer-%s: ops=%d failures=%d ops/s=%.0f"
              + " restart=%d ms, first success %d ms after it listened again; connections"
              + " opened=%d%n", mode.name().toLowerCase(), load.ops(), failures.size(), steady,
          LoadLoops.ms(listening - restartStart), recoveryMs, opened.size());

      assertThat(firstOk).as("operations succeed again after the restart").isPositive();
      assertThat(failures).as("only operations around the restart fail")
          .allSatisfy(f -> assertThat(f.endNanos()).isGreaterThanOrEqualTo(restartStart));
      assertThat(opened.size()).as("the dropped connections were replaced").isGreaterThan(before);
      assertThat(pool.stats().allocated()).isLessThanOrEqualTo(10);
    } finally {
      load.stop(Duration.ofSeconds(10));
    }
  }

  // ---------------------------------------------------------------- session mode

  @Test
  void sessionModeResetsWhatABorrowerSetBeforeTheNextOne() {
    bouncer = PgBouncer.start(Mode.SESSION, 4);
    ConnectionPool pool = pool(Mode.SESSION, b -> b.maxSize(1));
    pool.withConnection(c -> updates(c, "SET lagoon.marker = 'left-behind'")).blockLast(BOUND);
    assertThat(pool.withConnection(c -> text(c, "SELECT current_setting('lagoon.marker', true)"))
        .blockLast(BOUND)).as("the next borrower does not see the SET").isNullOrEmpty();

    ConnectionPool never = pool(Mode.SESSION, b -> b.maxSize(1).sessionReset(SessionReset.NEVER));
    never.withConnection(c -> updates(c, "SET lagoon.marker = 'left-behind'")).blockLast(BOUND);
    assertThat(never.withConnection(c -> text(c, "SELECT current_setting('lagoon.marker', true)"))
        .blockLast(BOUND)).as("without the reset it would leak: PgBouncer keeps the session")
        .isEqualTo("left-behind");
  }

  // ---------------------------------------------------------------- transaction mode

  @Test
  void transactionModeBreaksTheDriversPreparedStatementCacheAndTheHintSaysHowToFixIt() {
    bouncer = PgBouncer.start(Mode.TRANSACTION, 1); // one server connection for both clients
    String sql = "SELECT $1::int + 1";
    ConnectionPool pool = ConnectionPool.builder(ConnectionFactories.get(bouncer.options(app)))
        .poolName(app).maxSize(2).initialSize(0).build();
    pools.add(pool);
    Connection a = Mono.<Connection>from(pool.create()).block(BOUND);
    Connection b = Mono.<Connection>from(pool.create()).block(BOUND);
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      assertThat(bound(a, sql, 1).block(BOUND)).isEqualTo(2); // prepares S_0 on the server
      assertThatThrownBy(() -> bound(b, sql, 2).block(BOUND)) // b's driver prepares S_0 again
          .isInstanceOf(R2dbcException.class)
          .hasMessageContaining("prepared statement \"S_0\" already exists");
      log = logs.text();
    } finally {
      Mono.from(a.close()).block(BOUND);
      Mono.from(b.close()).block(BOUND);
    }
    assertThat(log).as("one warning, naming the pool and the fix")
        .contains("Pool '" + app + "'", "preparedStatementCacheQueries=0");
    assertThat(log.split("preparedStatementCacheQueries=0", -1)).hasSize(2);

    ConnectionPool fixed = pool(Mode.TRANSACTION, builder -> builder.maxSize(2));
    Connection c = Mono.<Connection>from(fixed.create()).block(BOUND);
    Connection d = Mono.<Connection>from(fixed.create()).block(BOUND);
    assertThat(bound(c, sql, 1).block(BOUND)).isEqualTo(2);
    assertThat(bound(d, sql, 2).block(BOUND)).isEqualTo(3);
    assertThat(bound(c, sql, 3).block(BOUND)).isEqualTo(4);
    Mono.from(c.close()).block(BOUND);
    Mono.from(d.close()).block(BOUND);
  }

  @Test
  void transactionModeWithTheStatementCacheOffRunsBoundStatementsUnderLoad() {
    bouncer = PgBouncer.start(Mode.TRANSACTION, 4);
    ConnectionPool pool = pool(Mode.TRANSACTION, b -> b.maxSize(10));
    List<Integer> results = Flux.range(0, 2000)
        .flatMap(i -> pool.withConnection(c -> bound(c, i % 2 == 0 ? "SELECT $1::int + 1"
            : "SELECT $1::int + 1 + 0", i)), 64)
        .collectList().block(BOUND);
    assertThat(results).hasSize(2000);
  }

  @Test
  void transactionModeRollsBackWhatABorrowerLeftOpenSoPgBouncerCanReassignTheServer() {
    bouncer = PgBouncer.start(Mode.TRANSACTION, 1); // a leaked transaction would block everyone
    ConnectionPool pool = pool(Mode.TRANSACTION, b -> b.maxSize(2));
    ConnectionPool other = pool(Mode.TRANSACTION, b -> b.maxSize(1));

    Connection c = Mono.<Connection>from(pool.create()).block(BOUND);
    Mono.from(c.beginTransaction()).block(BOUND);
    updates(c, "INSERT INTO " + table + " VALUES (1)").blockLast(BOUND);
    updates(c, "SET LOCAL lagoon.marker = 'local'").blockLast(BOUND);
    Mono.from(c.close()).block(BOUND); // no commit: the pool rolls back

    assertThat(other.withConnection(x -> column(x, "SELECT count(*)::int FROM " + table,
            Integer.class))
        .blockLast(Duration.ofSeconds(10)))
        .as("another PgBouncer client gets the only server connection: the row was rolled back")
        .isZero();
    assertThat(other.withConnection(x -> text(x, "SELECT current_setting('lagoon.marker', true)"))
        .blockLast(BOUND)).as("SET LOCAL ended with the transaction").isNullOrEmpty();
    assertThat(pool.withConnection(x -> Mono.from(x.validate(ValidationDepth.REMOTE)))
        .blockLast(BOUND)).isTrue();
  }

  @Test
  void transactionModeSharesSessionStateBetweenClientsWhichNoPoolCanUndo() {
    bouncer = PgBouncer.start(Mode.TRANSACTION, 1);
    ConnectionPool pool = pool(Mode.TRANSACTION, b -> b.maxSize(1));
    ConnectionPool other = pool(Mode.TRANSACTION, b -> b.maxSize(1));
    Connection c = Mono.<Connection>from(pool.create()).block(BOUND);
    try {
      updates(c, "SET lagoon.marker = 'shared'").blockLast(BOUND);
      assertThat(other.withConnection(x -> text(x, "SELECT current_setting('lagoon.marker', true)"))
          .blockLast(BOUND)).as("a plain SET lands on a server connection other clients use next,"
              + " while its borrower still holds its connection: use SET LOCAL in a transaction")
          .isEqualTo("shared");
    } finally {
      Mono.from(c.close()).block(BOUND);
    }
  }

  // ---------------------------------------------------------------- helpers

  /** Session mode pins a server connection to each client: PgBouncer needs one per connection. */
  private static int serverConnections(Mode mode) {
    return mode == Mode.SESSION ? 10 : 4;
  }

  private ConnectionPool pool(Mode mode,
      java.util.function.UnaryOperator<ConnectionPoolBuilder> configure) {
    ConnectionFactoryOptions options = bouncer.options(app);
    if (mode == Mode.TRANSACTION) {
      options = options.mutate().option(STATEMENT_CACHE, "0").build();
    }
    ConnectionFactory real = ConnectionFactories.get(options);
    ConnectionFactory recording = new ConnectionFactory() {
      @Override
      public Publisher<? extends Connection> create() {
        return Mono.from(real.create()).doOnNext(opened::add);
      }

      @Override
      public ConnectionFactoryMetadata getMetadata() {
        return real.getMetadata();
      }
    };
    ConnectionPool pool = configure.apply(ConnectionPool.builder(recording)
        .poolName(app + "-" + pools.size())).build();
    pools.add(pool);
    pool.warmup().block(BOUND);
    return pool;
  }

  private long countRows() {
    return Sql.one(PostgresSupport.connectionFactory(), "SELECT count(*) FROM " + table,
        Long.class);
  }

  private static void direct(String sql) {
    Sql.exec(PostgresSupport.connectionFactory(), sql);
  }
}
