package io.lagoon.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.ValidationDepth;
import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;

/** The fault proxy against a blocking echo server and against the test PostgreSQL. */
class FaultProxyTest {

  private static final Duration BOUND = Duration.ofSeconds(20);
  /** How long "nothing arrived" is watched: a proxy that forwarded would answer in microseconds. */
  private static final int QUIET_MS = 300;

  private EchoServer echo;
  private FaultProxy proxy;
  private final List<Socket> sockets = new CopyOnWriteArrayList<>();

  @AfterEach
  void tearDown() throws IOException {
    for (Socket s : sockets) {
      s.close();
    }
    if (proxy != null) {
      proxy.close();
    }
    if (echo != null) {
      echo.close();
    }
  }

  // ---------------------------------------------------------------- echo server

  @Test
  void forwardsBytesBothWaysAndPassesTheCloseOn() throws IOException {
    startEcho();
    Socket s = connect();
    byte[] sent = new byte[1 << 20];
    new Random(42).nextBytes(sent);
    CompletableFuture<Void> writing = CompletableFuture.runAsync(() -> write(s, sent));
    byte[] back = s.getInputStream().readNBytes(sent.length);
    writing.join();
    assertThat(Arrays.equals(back, sent)).as("1 MiB echoed unchanged through the proxy").isTrue();

    s.shutdownOutput();
    assertThat(s.getInputStream().read()).as("the echo server's close reached the client").isEqualTo(-1);
    Await.until("the proxy forgot the closed connection", () -> proxy.openConnections() == 0);
    assertThat(proxy.bytesForwarded()).isEqualTo(2L * sent.length);
  }

  @Test
  void resetAllResetsBothSides() throws IOException {
    startEcho();
    Socket s = connect();
    assertThat(roundTrip(s, "ping")).isEqualTo("ping");

    proxy.resetAll();

    assertThatThrownBy(() -> s.getInputStream().read()).as("the client receives an RST")
        .isInstanceOf(SocketException.class).hasMessageContaining("reset");
    Await.until("the server side received an RST", () -> echo.resetsSeen.get() == 1);
    assertThat(proxy.resets()).isEqualTo(1);
    assertThat(proxy.openConnections()).isZero();
    assertThat(roundTrip(connect(), "again")).as("new connections are forwarded as before")
        .isEqualTo("again");
  }

  @Test
  void refusingResetsNewConnectionsAtOnceAndLeavesOpenOnesAlone() throws IOException {
    startEcho();
    Socket open = connect();
    assertThat(roundTrip(open, "one")).isEqualTo("one");

    proxy.refuse(true);
    // the RST may arrive before a timed connect returns, or at the first read
    assertThatThrownBy(() -> connect().getInputStream().read()).as("a refused client is reset")
        .isInstanceOf(SocketException.class).hasMessageContaining("reset");
    assertThat(roundTrip(open, "two")).as("the open connection still works").isEqualTo("two");
    assertThat(proxy.refused()).isEqualTo(1);
    assertThat(echo.accepted.get()).as("a refused connection never reaches the target").isEqualTo(1);

    proxy.refuse(false);
    assertThat(roundTrip(connect(), "three")).isEqualTo("three");
    assertThat(proxy.connectAttempts()).isEqualTo(3);
  }

  @Test
  void blackHoleHoldsBytesAndClosesAndDeliversThemInOrderWhenReleased() throws IOException {
    startEcho();
    Socket before = connect();
    assertThat(roundTrip(before, "warm")).isEqualTo("warm");
    long received = echo.bytesReceived.get();

    proxy.blackHole(true);
    write(before, "held".getBytes(StandardCharsets.US_ASCII));
    before.shutdownOutput(); // the close must wait behind the bytes
    Socket during = connect();
    write(during, "new".getBytes(StandardCharsets.US_ASCII));

    assertQuiet(before);
    assertQuiet(during);
    assertThat(echo.bytesReceived.get()).as("nothing reached the target").isEqualTo(received);
    assertThat(echo.eofsSeen.get()).as("the close did not reach the target").isZero();
    assertThat(proxy.resets()).isZero();

    proxy.blackHole(false);

    assertThat(read(before, 4)).isEqualTo("held");
    assertThat(before.getInputStream().read()).as("then the close, in order").isEqualTo(-1);
    assertThat(read(during, 3)).isEqualTo("new");
  }

  @Test
  void latencyDelaysEachDirection() throws IOException {
    startEcho();
    Socket s = connect();
    assertThat(roundTrip(s, "x")).isEqualTo("x");
    proxy.latency(Duration.ofMillis(150));
    long start = System.nanoTime();
    assertThat(roundTrip(s, "slow")).isEqualTo("slow");
    long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertThat(tookMs).as("150 ms each way, never less").isGreaterThanOrEqualTo(300);
    proxy.latency(Duration.ZERO);
    assertThat(roundTrip(s, "fast")).isEqualTo("fast");
  }

  @Test
  void badArgumentsAndUseAfterCloseAreNamed() throws IOException {
    startEcho();
    assertThatThrownBy(() -> proxy.latency(Duration.ofMillis(-1)))
        .isInstanceOf(IllegalArgumentException.class).hasMessage("latency (PT-0.001S) must not be negative");
    int port = proxy.port();
    proxy.close();
    assertThatThrownBy(proxy::resetAll).isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("closed");
    assertThatThrownBy(() -> new Socket(InetAddress.getLoopbackAddress(), port).close())
        .as("nothing listens after close").isInstanceOf(ConnectException.class);
  }

  // ---------------------------------------------------------------- PostgreSQL

  @Test
  void postgresThroughTheProxyQueriesAndDiesOnReset() {
    proxy = FaultProxy.toPostgres();
    String app = Backends.marker("proxy");
    ConnectionFactory factory = ConnectionFactories.get(proxy.postgresOptions(app));
    Connection c = Mono.<Connection>from(factory.create()).block(BOUND);
    try {
      assertThat(selectOne(c).block(BOUND)).isEqualTo(1);
      assertThat(backends(app)).isEqualTo(1);

      proxy.resetAll();

      assertThatThrownBy(() -> selectOne(c).block(BOUND)).isInstanceOf(R2dbcException.class);
      Await.driverSeesClosed("the driver reports the connection closed", List.of(c));
      Await.until("the server's backend saw the reset and ended", () -> backends(app) == 0);
    } finally {
      Mono.from(c.close()).onErrorResume(e -> Mono.empty()).block(BOUND);
    }
  }

  @Test
  void postgresQueriesAndConnectsWaitInTheBlackHoleAndCompleteWhenItCloses() {
    proxy = FaultProxy.toPostgres();
    String app = Backends.marker("proxy");
    ConnectionFactory factory = ConnectionFactories.get(proxy.postgresOptions(app));
    Connection c = Mono.<Connection>from(factory.create()).block(BOUND);
    try {
      proxy.blackHole(true);
      CompletableFuture<Integer> query = selectOne(c).toFuture();
      CompletableFuture<Connection> connect = Mono.<Connection>from(factory.create()).toFuture();
      sleepQuietly();
      assertThat(query).as("no answer inside the hole").isNotDone();
      assertThat(connect).as("no handshake inside the hole").isNotDone();
      assertThat(Mono.from(c.validate(ValidationDepth.LOCAL)).block(BOUND))
          .as("and no reset either: the driver still sees an open connection").isTrue();
      assertThat(activeQueries(app)).as("the query never reached the server").isZero();

      proxy.blackHole(false);

      assertThat(query.orTimeout(BOUND.toSeconds(), TimeUnit.SECONDS).join()).isEqualTo(1);
      Connection late = connect.orTimeout(BOUND.toSeconds(), TimeUnit.SECONDS).join();
      assertThat(selectOne(late).block(BOUND)).isEqualTo(1);
      Mono.from(late.close()).block(BOUND);
    } finally {
      Mono.from(c.close()).onErrorResume(e -> Mono.empty()).block(BOUND);
    }
  }

  // ---------------------------------------------------------------- helpers

  private void startEcho() throws IOException {
    echo = new EchoServer();
    proxy = FaultProxy.to("127.0.0.1", echo.port());
  }

  private Socket connect() throws IOException {
    Socket s = new Socket();
    sockets.add(s);
    s.connect(new InetSocketAddress(proxy.host(), proxy.port()), 5_000);
    s.setSoTimeout((int) BOUND.toMillis());
    s.setTcpNoDelay(true);
    return s;
  }

  private static void write(Socket s, byte[] bytes) {
    try {
      s.getOutputStream().write(bytes);
      s.getOutputStream().flush();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private static String read(Socket s, int n) throws IOException {
    byte[] bytes = s.getInputStream().readNBytes(n);
    return new String(bytes, StandardCharsets.US_ASCII);
  }

  private static String roundTrip(Socket s, String text) throws IOException {
    write(s, text.getBytes(StandardCharsets.US_ASCII));
    return read(s, text.length());
  }

  /** Nothing arrives (no byte, no close, no reset) while the hole is open. */
  private static void assertQuiet(Socket s) throws IOException {
    s.setSoTimeout(QUIET_MS);
    try {
      int b = s.getInputStream().read();
      throw new AssertionError("received " + b + " through a black hole");
    } catch (SocketTimeoutException expected) {
      // silence, as a black hole must be
    } finally {
      s.setSoTimeout((int) BOUND.toMillis());
    }
  }

  private static void sleepQuietly() {
    // Watching for silence is the one place where time passing is the point: nothing may arrive.
    Mono.delay(Duration.ofMillis(QUIET_MS)).block();
  }

  private static Mono<Integer> selectOne(Connection c) {
    return Sql.column(c, "SELECT 1", Integer.class).single();
  }

  private static long backends(String app) {
    return count("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'");
  }

  private static long activeQueries(String app) {
    return count("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app
        + "' AND state = 'active'");
  }

  private static long count(String sql) {
    return Sql.one(PostgresSupport.connectionFactory(), sql, Long.class);
  }

  /** A blocking echo server on 127.0.0.1, one thread per connection, counting what it sees. */
  private static final class EchoServer implements AutoCloseable {
    final ServerSocket server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    final AtomicInteger accepted = new AtomicInteger();
    final AtomicInteger resetsSeen = new AtomicInteger();
    final AtomicInteger eofsSeen = new AtomicInteger();
    final AtomicLong bytesReceived = new AtomicLong();
    final List<Socket> open = new CopyOnWriteArrayList<>();

    EchoServer() throws IOException {
      Thread acceptor = new Thread(this::acceptLoop, "echo-accept");
      acceptor.setDaemon(true);
      acceptor.start();
    }

    int port() {
      return server.getLocalPort();
    }

    private void acceptLoop() {
      while (!server.isClosed()) {
        try {
          Socket s = server.accept();
          accepted.incrementAndGet();
          open.add(s);
          Thread t = new Thread(() -> echo(s), "echo-" + accepted.get());
          t.setDaemon(true);
          t.start();
        } catch (IOException e) {
          return;
        }
      }
    }

    private void echo(Socket s) {
      try (s) {
        InputStream in = s.getInputStream();
        byte[] buffer = new byte[8192];
        for (int n; (n = in.read(buffer)) > 0; ) {
          bytesReceived.addAndGet(n);
          s.getOutputStream().write(buffer, 0, n);
        }
        eofsSeen.incrementAndGet();
      } catch (SocketException e) {
        if (String.valueOf(e.getMessage()).contains("reset")) {
          resetsSeen.incrementAndGet();
        }
      } catch (IOException e) {
        // the test looks at counters only
      }
    }

    @Override
    public void close() throws IOException {
      server.close();
      for (Socket s : open) {
        s.close();
      }
    }
  }
}
