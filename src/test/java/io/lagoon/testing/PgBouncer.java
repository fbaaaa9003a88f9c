package io.lagoon.testing;

import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.jspecify.annotations.Nullable;
import org.junit.jupiter.api.Assumptions;
import reactor.core.publisher.Mono;

/**
 * A PgBouncer process for tests, in front of the test PostgreSQL that {@link PostgresSupport}
 * located: started on a free loopback port with a configuration generated in a temporary
 * directory ({@code auth_type = trust}, a generated user list), in session or transaction mode;
 * {@link #restart() restarted} on the same port; {@link #close() stopped} and its files deleted.
 *
 * <p>The binary is {@code pgbouncer} on the {@code PATH} or {@code /usr/sbin/pgbouncer} (Debian's
 * package, which {@code .ci/run} installs). Without it, tests are skipped, except under CI
 * ({@code CI=true}), where that is an error. PgBouncer refuses to run as root: as root it is
 * started with {@code -u postgres}, and its files are readable by everyone.
 *
 * <p>Starting and stopping block the calling thread (a test thread). Not thread-safe.
 */
public final class PgBouncer implements AutoCloseable {

  /** PgBouncer's pool modes that the tests use. */
  public enum Mode { SESSION, TRANSACTION }

  private static final Duration START_BOUND = Duration.ofSeconds(30);
  private static final Duration STOP_BOUND = Duration.ofSeconds(10);

  private final Mode mode;
  private final int serverPoolSize;
  private final Path dir;
  private final Path binary;
  private final ConnectionFactoryOptions server;
  private int port;
  private @Nullable Process process;

  private PgBouncer(Mode mode, int serverPoolSize, Path binary) throws IOException {
    this.mode = mode;
    this.serverPoolSize = serverPoolSize;
    this.binary = binary;
    this.server = ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl());
    this.dir = Files.createTempDirectory("lagoon-pgbouncer-",
        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
    // PgBouncer runs as postgres when the tests run as root: it must read its configuration
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
  }

  /**
   * Starts PgBouncer in {@code mode}, with at most {@code serverPoolSize} server connections to
   * PostgreSQL. Skips the test when the binary is missing, unless {@code CI=true}.
   */
  public static PgBouncer start(Mode mode, int serverPoolSize) {
    Path binary = findBinary();
    if (binary == null) {
      String why = "PgBouncer is not installed (no pgbouncer on the PATH or in /usr/sbin):"
          + " install the Debian package pgbouncer (apt-get install -y pgbouncer), as .ci/run does";
      if ("true".equalsIgnoreCase(System.getenv("CI"))) {
        throw new IllegalStateException(why + "; CI=true, so this is an error, not a skip");
      }
      Assumptions.abort(why);
    }
    try {
      PgBouncer bouncer = new PgBouncer(mode, serverPoolSize, binary);
      bouncer.startOnFreePort();
      return bouncer;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot prepare PgBouncer's files: " + e, e);
    }
  }

  /** The port PgBouncer listens on, on 127.0.0.1. */
  public int port() {
    return port;
  }

  public Mode mode() {
    return mode;
  }

  /**
   * Driver options that reach the test database through PgBouncer, with {@code applicationName}
   * as this test's marker (PgBouncer passes it on to its server connections).
   */
  public ConnectionFactoryOptions options(String applicationName) {
    return server.mutate()
        .option(ConnectionFactoryOptions.HOST, "127.0.0.1")
        .option(ConnectionFactoryOptions.PORT, port)
        .option(Option.valueOf("applicationName"), applicationName)
        .build();
  }

  /** Stops PgBouncer (every client and server connection drops) and starts it again, same port. */
  public void restart() {
    stop();
    start(port);
  }

  /** Stops PgBouncer and deletes its files. */
  @Override
  public void close() {
    try {
      stop();
    } finally {
      try (Stream<Path> files = Files.walk(dir)) {
        files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
      } catch (IOException e) {
        // a temporary directory left behind
      }
    }
  }

  /** What PgBouncer printed so far, for failure messages. */
  public String log() {
    try {
      Path log = dir.resolve("pgbouncer.log");
      return Files.exists(log) ? Files.readString(log, StandardCharsets.UTF_8) : "";
    } catch (IOException e) {
      return "(log unreadable: " + e + ")";
    }
  }

  // ---------------------------------------------------------------- process

  private void startOnFreePort() throws IOException {
    IllegalStateException last = null;
    for (int attempt = 0; attempt < 3; attempt++) {
      int candidate;
      try (ServerSocket probe = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
        candidate = probe.getLocalPort();
      }
      try {
        start(candidate);
        return;
      } catch (IllegalStateException e) {
        last = e; // most likely someone took the port between the probe and PgBouncer's bind
      }
    }
    throw last;
  }

  private void start(int listenPort) {
    this.port = listenPort;
    try {
      writeConfig();
      List<String> command = new ArrayList<>();
      command.add(binary.toString());
      if ("root".equals(System.getProperty("user.name"))) {
        command.add("-u");
        command.add("postgres"); // PgBouncer refuses to run as root
      }
      command.add(dir.resolve("pgbouncer.ini").toString());
      Path log = dir.resolve("pgbouncer.log");
      process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    } catch (IOException e) {
      throw new IllegalStateException("cannot start PgBouncer (" + binary + "): " + e, e);
    }
    long deadline = System.nanoTime() + START_BOUND.toNanos();
    while (!accepts(listenPort)) {
      Process p = process;
      if (p == null || !p.isAlive() || System.nanoTime() - deadline > 0) {
        stop();
        throw new IllegalStateException("PgBouncer did not start listening on 127.0.0.1:"
            + listenPort + " within " + START_BOUND.toSeconds() + " s; its log:\n" + log());
      }
      pause();
    }
  }

  private void stop() {
    Process p = process;
    process = null;
    if (p == null) {
      return;
    }
    p.destroy(); // SIGTERM: PgBouncer shuts down at once, dropping every connection
    try {
      if (!p.waitFor(STOP_BOUND.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly().waitFor(STOP_BOUND.toMillis(), TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void writeConfig() throws IOException {
    String host = String.valueOf(server.getRequiredValue(ConnectionFactoryOptions.HOST));
    Object serverPort = server.getValue(ConnectionFactoryOptions.PORT);
    String database = String.valueOf(server.getRequiredValue(ConnectionFactoryOptions.DATABASE));
    String user = String.valueOf(server.getRequiredValue(ConnectionFactoryOptions.USER));
    Object password = server.getValue(ConnectionFactoryOptions.PASSWORD);
    String ini = String.join("\n",
        "[databases]",
        database + " = host=" + host + " port=" + (serverPort == null ? 5432 : serverPort)
            + " dbname=" + database,
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        "listen_port = " + port,
        "unix_socket_dir =",
        "auth_type = trust",
        "auth_file = " + dir.resolve("userlist.txt"),
        "pool_mode = " + mode.name().toLowerCase(Locale.ROOT),
        "default_pool_size = " + serverPoolSize,
        "max_client_conn = 500",
        // r2dbc-postgresql sends it at startup; PgBouncer 1.18 refuses unknown startup parameters
        "ignore_startup_parameters = extra_float_digits",
        "");
    write("pgbouncer.ini", ini);
    // trust: PgBouncer accepts the client without a password and logs in to PostgreSQL with the
    // password listed here (empty for the local trust-authenticated server)
    write("userlist.txt", "\"" + user + "\" \"" + (password == null ? "" : password) + "\"\n");
  }

  private void write(String name, String content) throws IOException {
    Path file = dir.resolve(name);
    Files.writeString(file, content, StandardCharsets.UTF_8);
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
  }

  private static boolean accepts(int port) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress("127.0.0.1", port), 200);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private static void pause() {
    Mono.delay(Duration.ofMillis(20)).block(); // polling for the child to listen, bounded
  }

  private static @Nullable Path findBinary() {
    String path = System.getenv("PATH");
    List<String> dirs = new ArrayList<>(path == null ? List.of() : List.of(path.split(File.pathSeparator)));
    dirs.add("/usr/sbin");
    for (String d : dirs) {
      Path candidate = Path.of(d, "pgbouncer");
      if (Files.isExecutable(candidate)) {
        return candidate;
      }
    }
    return null;
  }
}
