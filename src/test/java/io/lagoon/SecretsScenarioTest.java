package io.lagoon;

import static io.lagoon.ScenarioSupport.BOUND;
import static io.lagoon.testing.Sql.text;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.CapturedLogs;
import io.lagoon.testing.FaultProxy;
import io.lagoon.testing.PasswordRejectingServer;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import javax.management.MBeanAttributeInfo;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.util.Loggers;

/**
 * Scenario 8, secrets: with a password-protected role created for the test, the password appears
 * nowhere in what the pool exposes: logs at every level (Lagoon's, the driver's, Reactor Netty's,
 * Netty's), exceptions with their stack traces, causes and suppressed errors (connect refused,
 * connect reset by a proxy, the password rejected by a server, timeouts, a full queue, a closed
 * pool, SQL errors, bad options), the {@code toString} of every public type and of what the pool
 * hands out, and every JMX attribute. Lagoon has no Micrometer meters yet; when they come, their
 * names, tags and values belong in this search too.
 *
 * <p>The local test server trusts every connection from 127.0.0.1, so it never asks for the
 * password: a small fake server asks for it, records it (proving that the driver really sent it)
 * and rejects it, so that an authentication failure with the password on the wire is searched
 * too.
 */
class SecretsScenarioTest {

  private final String secret = "Lagoon-Secret-" + UUID.randomUUID().toString().replace("-", "");
  private final String role = "lagoon_secret_" + UUID.randomUUID().toString().substring(0, 8);
  private final String marker = Backends.marker("secrets");
  private final List<ConnectionPool> pools = new ArrayList<>();
  private final StringBuilder evidence = new StringBuilder();
  private int exceptions;
  private int strings;
  private FaultProxy proxy;
  private PasswordRejectingServer rejecting;

  @BeforeEach
  void createRole() {
    // before any capture: the statement itself holds the password
    direct("CREATE ROLE " + role + " LOGIN PASSWORD '" + secret + "'");
  }

  @AfterEach
  void dropRole() throws IOException {
    pools.forEach(ConnectionPool::dispose);
    if (proxy != null) {
      proxy.close();
    }
    if (rejecting != null) {
      rejecting.close();
    }
    try (Backends server = Backends.connect()) {
      server.awaitCount(marker, 0, Await.BOUND); // the pools' sessions of the role have ended
    } catch (AssertionError stillThere) {
      // dropped all the same: what this scenario asserts is the search, not the sessions' end
    } finally {
      direct("DROP ROLE IF EXISTS " + role);
    }
  }

  @Test
  void thePasswordAppearsInNoLogExceptionToStringOrJmxAttribute() throws Exception {
    String canary = "capture-check-" + UUID.randomUUID();
    String logs;
    try (CapturedLogs captured = CapturedLogs.start(true)) {
      Loggers.getLogger("io.lagoon.internal.PoolCore").debug(canary);
      useAPoolBuiltFromAUrlWithThePassword();
      buildAPoolInCode();
      failToConnectInEveryWay();
      rejectBadOptions();
      logs = captured.text();
    }
    evidence.append(logs);

    ScenarioSupport.figures("secrets", "searched %d characters: %d log lines, %d exceptions with"
            + " their causes, %d toString and JMX values; password occurrences: %d",
        evidence.length(), logs.lines().count(), exceptions, strings,
        evidence.toString().split(secret, -1).length - 1);

    assertThat(logs).as("the capture saw a debug line of Lagoon's logger").contains(canary);
    assertThat(rejecting.passwordsReceived()).as("the password really went on the wire")
        .isNotEmpty().allMatch(secret::equals);
    assertThat(evidence).as("the failures are in the evidence, naming the role")
        .contains("28P01", role, "PoolUnavailableException", "PoolAcquireTimeoutException");
    assertThat(evidence.toString()).as("the password, anywhere").doesNotContain(secret);
  }

  // ---------------------------------------------------------------- what is exercised

  private void useAPoolBuiltFromAUrlWithThePassword() throws Exception {
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(url()
        + "?poolName=" + marker + "&registerJmx=true&maxSize=2&maxPendingAcquires=1"
        + "&maxAcquireTime=500ms&applicationName=" + marker);
    pools.add(pool);
    assertThat(pool.withConnection(c -> text(c, "SELECT current_user")).blockLast(BOUND))
        .as("the pool logs in as the role").isEqualTo(role);
    pool.inTransaction(c -> text(c, "SELECT 'in a transaction'")).blockLast(BOUND);
    failure(() -> pool.withConnection(c -> text(c, "SELECT 1/0")).blockLast(BOUND));

    Connection a = Mono.<Connection>from(pool.create()).block(BOUND);
    Connection b = Mono.<Connection>from(pool.create()).block(BOUND);
    strings(a, b, pool, pool.stats(), pool.unwrap(), pool.getMetadata().getName(),
        new LagoonConnectionFactoryProvider());
    CompletableFuture<Connection> waiting = Mono.<Connection>from(pool.create()).toFuture();
    failure(() -> Mono.from(pool.create()).block(BOUND)); // the queue holds one: exhausted
    failure(waiting::join); // timed out after maxAcquireTime
    jmx(pool.name());
    Mono.from(a.close()).block(BOUND);
    failure(() -> Flux.from(a.createStatement("SELECT 1").execute()).blockLast(BOUND)); // closed
    strings(a);
    Mono.from(b.close()).block(BOUND);
    pool.close().block(BOUND);
    failure(() -> Mono.from(pool.create()).block(BOUND));
    strings(pool, pool.stats());
  }

  private void buildAPoolInCode() {
    ConnectionFactory driver = ConnectionFactories.get(ConnectionFactoryOptions
        .parse("r2dbc:postgresql://" + role + ":" + secret + "@" + PostgresSupport.host() + ":"
            + PostgresSupport.port() + "/" + PostgresSupport.database() + "?applicationName="
            + marker));
    ConnectionPoolBuilder builder = ConnectionPool.builder(driver).poolName(marker + "-code")
        .maxSize(1).validationQuery("SELECT 1");
    strings(builder, builder.config());
    ConnectionPool pool = builder.build();
    pools.add(pool);
    assertThat(pool.withConnection(c -> text(c, "SELECT current_user")).blockLast(BOUND))
        .isEqualTo(role);
    strings(pool, pool.stats());
    failure(() -> ConnectionPool.builder(pool));
  }

  private void failToConnectInEveryWay() throws IOException {
    // reset by a proxy that refuses every connection
    proxy = FaultProxy.toPostgres();
    proxy.refuse(true);
    failedConnect(url(proxy.host(), proxy.port()), "-refused");
    // nothing listening
    int closedPort;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      closedPort = s.getLocalPort();
    }
    failedConnect(url("127.0.0.1", closedPort), "-closed-port");
    // a server that asks for the password and rejects it
    rejecting = new PasswordRejectingServer();
    failedConnect(url("127.0.0.1", rejecting.port()), "-rejected");
    // the same, waited for up to the deadline: the timeout carries the last connect error
    ConnectionPool patient = (ConnectionPool) ConnectionFactories.get(url("127.0.0.1",
        rejecting.port()) + "?poolName=" + marker + "-patient&initialSize=0&maxAcquireTime=300ms"
        + "&acquireRetry=2147483647");
    pools.add(patient);
    failure(() -> Mono.from(patient.create()).block(BOUND));
    strings(patient, patient.stats());
  }

  private void failedConnect(String url, String suffix) {
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(url + "?poolName=" + marker
        + suffix + "&initialSize=0&registerJmx=true&applicationName=" + marker);
    pools.add(pool);
    failure(() -> Mono.from(pool.create()).block(BOUND));
    strings(pool.warmup().block(BOUND)); // connects fail: warmup reports none opened
    jmx(pool.name());
    strings(pool, pool.stats());
  }

  private void rejectBadOptions() {
    String base = url();
    for (String query : List.of("?maxSize=ten", "?maxSize=-1", "?maxAcquireTime=5",
        "?minIdle=20&maxSize=2", "?registerJmx=maybe", "?validationDepth=DEEP")) {
      failure(() -> ConnectionFactories.get(base + query));
    }
    failure(() -> ConnectionFactories.get("r2dbc:lagoon:nosuchdriver://" + role + ":" + secret
        + "@127.0.0.1/" + PostgresSupport.database()));
    failure(() -> ConnectionFactories.get("r2dbc:lagoon:pool:postgresql://" + role + ":" + secret
        + "@127.0.0.1/" + PostgresSupport.database()));
    failure(() -> ConnectionFactories.get("r2dbc:lagoon://" + role + ":" + secret
        + "@127.0.0.1/" + PostgresSupport.database()));
  }

  // ---------------------------------------------------------------- evidence

  private void failure(ThrowingRunnable action) {
    try {
      action.run();
    } catch (Throwable t) {
      Throwable e = t instanceof java.util.concurrent.CompletionException && t.getCause() != null
          ? t.getCause() : t;
      StringWriter trace = new StringWriter();
      e.printStackTrace(new PrintWriter(trace)); // message, causes, suppressed
      evidence.append(trace).append('\n');
      for (Throwable c = e; c != null; c = c.getCause() == c ? null : c.getCause()) {
        evidence.append(c).append('\n').append(c.getLocalizedMessage()).append('\n');
      }
      exceptions++;
      return;
    }
    throw new AssertionError("expected a failure");
  }

  private void strings(Object... objects) {
    for (Object o : objects) {
      evidence.append(o).append('\n');
      strings++;
    }
  }

  private void jmx(String poolName) {
    try {
      MBeanServer server = ManagementFactory.getPlatformMBeanServer();
      ObjectName name = new ObjectName("io.lagoon:type=ConnectionPool,name="
          + ObjectName.quote(poolName));
      evidence.append(name).append('\n');
      for (MBeanAttributeInfo attribute : server.getMBeanInfo(name).getAttributes()) {
        evidence.append(attribute.getName()).append('=')
            .append(server.getAttribute(name, attribute.getName())).append('\n');
        strings++;
      }
    } catch (javax.management.JMException e) {
      throw new AssertionError("cannot read the MBean of pool " + poolName + ": " + e, e);
    }
  }

  @FunctionalInterface
  private interface ThrowingRunnable {
    void run() throws Throwable;
  }

  // ---------------------------------------------------------------- the server

  /** A Lagoon URL of the test server that logs in as the role, with its password. */
  private String url() {
    return url(PostgresSupport.host(), PostgresSupport.port());
  }

  private String url(String host, int port) {
    return "r2dbc:lagoon:postgresql://" + role + ":" + secret + "@" + host + ":" + port + "/"
        + PostgresSupport.database();
  }

  private static void direct(String sql) {
    Sql.exec(PostgresSupport.connectionFactory(), sql);
  }
}
