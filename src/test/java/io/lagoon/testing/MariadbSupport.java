package io.lagoon.testing;

import io.lagoon.testing.ServerProbe.Server;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;

/**
 * Finds a MariaDB (or MySQL) server for integration tests, once per JVM, trying in order:
 *
 * <ol>
 *   <li>the R2DBC URL in the environment variable {@value #URL_ENV} (or, as an alias, the system
 *       property {@value #URL_PROPERTY}), e.g. {@code r2dbc:mariadb://user:pass@host:3306/db}; if it
 *       is set but unusable, that is an error (no fall-back);
 *   <li>a server on {@code 127.0.0.1:3306} with user {@code root} (no password) and database
 *       {@code test}, if a TCP connect succeeds within 1 s and {@code SELECT 1} works;
 *   <li>otherwise every call fails with an {@link IllegalStateException} saying how to provide one.
 * </ol>
 *
 * <p>The probe blocks, so the first call must come from a thread that may block (a test thread,
 * not a Reactor non-blocking thread); later calls return the cached outcome.
 */
public final class MariadbSupport {

  public static final String URL_ENV = "LAGOON_TEST_MARIADB_URL";
  public static final String URL_PROPERTY = "lagoon.test.mariadb.url";

  static final String LOCAL_HOST = "127.0.0.1";
  static final int LOCAL_PORT = 3306;
  static final String LOCAL_USER = "root";
  static final String LOCAL_DATABASE = "test";

  /** Locates the server once and caches where it is, or why there is none. */
  private static final ServerProbe PROBE =
      new ServerProbe("MariadbSupport", "MariaDB", "SELECT VERSION()", MariadbSupport::locate);

  private MariadbSupport() {}

  /** The plain R2DBC URL of the located server (with its password, if any: test credentials). */
  public static String r2dbcUrl() {
    return PROBE.located().url();
  }

  /** The same server through Lagoon: {@code r2dbc:lagoon:mariadb://...}. */
  public static String lagoonUrl() {
    return toLagoonUrl(r2dbcUrl());
  }

  /**
   * {@link #lagoonUrl()} with {@code query} ({@code maxSize=1&initialSize=1}) added to the options
   * its URL may already carry.
   */
  public static String lagoonUrl(String query) {
    return ServerProbe.lagoonUrl(r2dbcUrl(), query);
  }

  /** A driver factory of the located server (not pooled: each create() is a new session). */
  public static ConnectionFactory connectionFactory() {
    return ConnectionFactories.get(r2dbcUrl());
  }

  /** {@code SELECT CONNECTION_ID()} on {@code c}: which server connection it is (blocking). */
  public static long connectionId(Connection c) {
    Long id = Sql.one(c, "SELECT CONNECTION_ID()", Long.class);
    if (id == null) {
      throw new IllegalStateException("no answer to SELECT CONNECTION_ID()");
    }
    return id;
  }

  /** Where the server came from, with its version; no password. */
  public static String describe() {
    return PROBE.located().description();
  }

  /** Turns {@code r2dbc[s]:<driver>...} into {@code r2dbc[s]:lagoon:<driver>...}. */
  public static String toLagoonUrl(String url) {
    int colon = url.indexOf(':');
    if (colon < 0) {
      throw new IllegalArgumentException("not an R2DBC URL: " + ServerProbe.mask(url));
    }
    return url.substring(0, colon + 1) + "lagoon:" + url.substring(colon + 1);
  }

  private static Server locate() {
    // (a) an explicit URL
    Server explicit = PROBE.fromExplicitUrl(URL_ENV, URL_PROPERTY);
    if (explicit != null) {
      return explicit;
    }

    // (b) a local server, or (c) give up, saying how to provide one
    String localUrl = "r2dbc:mariadb://" + LOCAL_USER + "@" + LOCAL_HOST + ":" + LOCAL_PORT + "/"
        + LOCAL_DATABASE;
    return PROBE.local(LOCAL_HOST, LOCAL_PORT, LOCAL_USER, LOCAL_DATABASE, localUrl,
        () -> ConnectionFactories.get(localUrl),
        whyNotLocal -> new IllegalStateException("No MariaDB available for tests. Provide one of:\n"
            + "  1. set " + URL_ENV + "=r2dbc:mariadb://user:pass@host:port/db (or -D" + URL_PROPERTY
            + "=...),\n"
            + "  2. run MariaDB on " + LOCAL_HOST + ":" + LOCAL_PORT + " with user " + LOCAL_USER
            + " (no password) and a database " + LOCAL_DATABASE + ".\n"
            + "Tried: " + URL_ENV + " unset; " + whyNotLocal + "."));
  }
}
