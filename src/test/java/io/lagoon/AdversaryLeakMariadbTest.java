package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Gc;
import io.lagoon.testing.CapturedLogs;
import io.lagoon.testing.MariadbSupport;
import io.lagoon.testing.Peek;
import io.lagoon.testing.SerializedVirtualTime;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Adversarial tests of leak detection and of the promise that no connection is ever lost, against
 * the real MariaDB: a leak report and its INFO, handles dropped without {@code close()} (also
 * after the pool closed), a connection killed while lent. Every connection the pool opens is
 * known by its CONNECTION_ID() and looked up in the server's process list; after each test none
 * of them may be left.
 */
class AdversaryLeakMariadbTest {

  private static final Duration T = Duration.ofSeconds(30);
  private static final String WARN_LENT = "has been lent for";
  private static final String INFO_BACK = "came back after";
  private static final String WARN_ABANDONED = "a lent connection was never closed";

  private final String tag = UUID.randomUUID().toString().substring(0, 8);
  private final SerializedVirtualTime time = new SerializedVirtualTime();
  private final Set<Long> ids = new HashSet<>();
  private final List<ConnectionPool> pools = new ArrayList<>();
  private Connection monitor;

  @BeforeEach
  void setUp() {
    monitor = Mono.from(ConnectionFactories.get(MariadbSupport.r2dbcUrl()).create()).block(T);
  }

  @AfterEach
  void tearDown() {
    try {
      for (ConnectionPool p : pools) {
        CompletableFuture<Void> closed = p.closeGracefully(Duration.ZERO).toFuture();
        time.advanceTimeBy(Duration.ZERO);
        Mono.fromFuture(closed).block(T);
        PoolStats s = p.stats();
        assertThat(s.closed()).as("opened = closed: %s", s).isEqualTo(s.created());
      }
      for (long id : ids) {
        Await.until("connection " + id + " gone from the server", () -> !alive(id));
      }
    } finally {
      Mono.from(monitor.close()).block(T);
      time.dispose();
    }
  }

  // ------------------------------------------------------------------ helpers

  private ConnectionPool pool(UnaryOperator<ConnectionPoolBuilder> config) {
    ConnectionFactory driver = ConnectionFactories.get(MariadbSupport.r2dbcUrl());
    ConnectionPool p = config.apply(ConnectionPool.builder(driver).initialSize(0).scheduler(time)
        .maxAcquireTime(T).poolName("advleakm-" + tag)).build();
    pools.add(p);
    return p;
  }

  private static <V> V one(Connection c, String sql, Class<V> type) {
    return Flux.from(c.createStatement(sql).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, type))).blockLast(T);
  }

  /** Borrows a connection and notes its id, to look for it on the server later. */
  private Connection borrow(Mono<Connection> create) {
    Connection c = create.block(T);
    assertThat(c).isNotNull();
    ids.add(id(c));
    return c;
  }

  private static long id(Connection c) {
    return one(c, "SELECT CONNECTION_ID()", Long.class);
  }

  private static void close(Connection c) {
    Mono.from(c.close()).block(T);
  }

  /** Borrows a connection, notes its id and forgets it without close(). */
  private long borrowAndForget(Mono<Connection> create) {
    return id(borrow(create));
  }

  private boolean alive(long id) {
    return one(monitor, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " + id,
        Long.class) > 0;
  }

  private static int count(String log, String text) {
    return log.split(Pattern.quote(text), -1).length - 1;
  }

  private void collectUntilAbandoned(ConnectionPool pool, long n) {
    for (int i = 0; i < 200 && pool.stats().abandoned() < n; i++) {
      Gc.collect();
      time.advanceTimeBy(Duration.ofSeconds(30));
    }
    assertThat(pool.stats().abandoned()).as("abandoned connections taken back: %s", pool.stats())
        .isEqualTo(n);
  }

  // ------------------------------------------------------------------ tests

  @Test
  void aLeakIsReportedWithItsBorrowerAndItsReturnAtInfo() {
    ConnectionPool pool = pool(b -> b.maxSize(2).leakDetectionThreshold(Duration.ofSeconds(5)));
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Connection held = borrow(pool.create());
      time.advanceTimeBy(Duration.ofSeconds(4));
      assertThat(logs.text()).doesNotContain(WARN_LENT);
      time.advanceTimeBy(Duration.ofSeconds(10));
      close(held);
      log = logs.text();
    }
    assertThat(count(log, WARN_LENT)).isEqualTo(1);
    assertThat(count(log, INFO_BACK)).isEqualTo(1);
    assertThat(log).contains("Pool 'advleakm-" + tag + "': a connection has been lent for 5000 ms",
        "at io.lagoon.AdversaryLeakMariadbTest.aLeakIsReportedWithItsBorrowerAndItsReturnAtInfo(");
  }

  @Test
  void aDroppedConnectionIsTakenBackAndClosedOnTheServer() {
    ConnectionPool pool = pool(b -> b.maxSize(1).leakDetectionThreshold(Duration.ofHours(1)));
    long dropped;
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      dropped = borrowAndForget(pool.create());
      collectUntilAbandoned(pool, 1);
      log = logs.text();
    }
    Await.until("the dropped connection is closed on the server", () -> !alive(dropped));
    assertThat(count(log, WARN_ABANDONED)).isEqualTo(1);
    assertThat(log).contains("at io.lagoon.AdversaryLeakMariadbTest"
        + ".aDroppedConnectionIsTakenBackAndClosedOnTheServer(");
    Connection next = borrow(pool.create());
    assertThat(id(next)).as("never the dropped one").isNotEqualTo(dropped);
    close(next);
  }

  @Test
  void aConnectionDroppedAfterThePoolClosedIsStillClosedOnTheServer() {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    long dropped = borrowAndForget(pool.create());
    pool.close().block(T);
    collectUntilAbandoned(pool, 1);
    Await.until("the dropped connection is closed on the server", () -> !alive(dropped));
    assertThat(pool.stats().allocated()).isZero();
  }

  @Test
  void aConnectionKilledWhileLentIsNotHandedToTheNextWaiter() throws Exception {
    ConnectionPool pool = pool(b -> b.maxSize(1));
    Connection held = borrow(pool.create());
    long killed = id(held);
    CompletableFuture<Connection> waiting = pool.create().toFuture();
    Await.until("queued", () -> pool.stats().pending() == 1);
    Flux.from(monitor.createStatement("KILL CONNECTION " + killed).execute())
        .flatMap(Result::getRowsUpdated).blockLast(T);
    Connection physical = Peek.physical(held);
    Await.until("the driver knows it is closed", () -> Boolean.FALSE.equals(
        Mono.from(physical.validate(ValidationDepth.LOCAL)).block(T)));
    close(held); // the borrower never noticed
    Connection next = waiting.get(30, TimeUnit.SECONDS);
    ids.add(id(next));
    assertThat(id(next)).as("the waiter gets a working connection").isNotEqualTo(killed);
    close(next);
  }
}
