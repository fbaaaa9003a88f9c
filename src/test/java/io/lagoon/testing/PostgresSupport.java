package io.lagoon.testing;

import io.lagoon.testing.ServerProbe.Server;
import io.r2dbc.postgresql.PostgresqlConnectionConfiguration;
import io.r2dbc.postgresql.PostgresqlConnectionFactory;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import java.time.Duration;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.postgresql.PostgreSQLContainer;
import org.testcontainers.utility.DockerImageName;

/**
 * Finds a PostgreSQL server for integration tests, once per JVM, trying in order:
 *
 * <ol>
 *   <li>the R2DBC URL in the environment variable {@value #URL_ENV} (or, as an alias, the system
 *       property {@value #URL_PROPERTY}), opened with {@link ConnectionFactories#get(String)}; if it
 *       is set but unusable, that is an error (no fall-back);
 *   <li>a Testcontainers {@value #IMAGE} container, if Docker is available;
 *   <li>a server on {@code 127.0.0.1:5432} with user {@code postgres} (no password, trust auth) and
 *       database {@code test}, if a TCP connect succeeds within 1 s and {@code SELECT 1} works;
 *   <li>otherwise every call fails with an {@link IllegalStateException} saying how to provide one.
 * </ol>
 *
 * <p>The probe blocks, so the first call must come from a thread that may block (a test thread,
 * not a Reactor non-blocking thread); later calls just return the cached outcome.
 */
public final class PostgresSupport {

    public static final String URL_ENV = "LAGOON_TEST_POSTGRES_URL";
    public static final String URL_PROPERTY = "lagoon.test.postgres.url";
    public static final String IMAGE = "postgres:15-alpine";

    static final String LOCAL_HOST = "127.0.0.1";
    static final int LOCAL_PORT = 5432;
    static final String LOCAL_USER = "postgres";
    static final String LOCAL_DATABASE = "test";

    /** Locates the server once and caches where it is, or why there is none. */
    private static final ServerProbe PROBE =
            new ServerProbe("PostgresSupport", "PostgreSQL", "SHOW server_version", PostgresSupport::locate);

    private PostgresSupport() {
    }

    /** The connection factory of the located server (not pooled: each create() is a new session). */
    public static ConnectionFactory connectionFactory() {
        return PROBE.located().connectionFactory();
    }

    /** Human-readable description of where the server came from, with its version; no password. */
    public static String describe() {
        return PROBE.located().description();
    }

    /** R2DBC URL of the located server, including its password if any (test credentials only). */
    public static String r2dbcUrl() {
        return PROBE.located().url();
    }

    /**
     * The located server through Lagoon, {@code r2dbc:lagoon:postgresql://...}, with {@code query}
     * ({@code maxSize=3&initialSize=1}) added to the options its URL may already carry.
     */
    public static String lagoonUrl(String query) {
        return ServerProbe.lagoonUrl(r2dbcUrl(), query);
    }

    /**
     * Driver options of the located server whose sessions carry {@code applicationName}: the
     * marker that tells a test's backends from everyone else's on the shared server.
     */
    public static ConnectionFactoryOptions options(String applicationName) {
        return ConnectionFactoryOptions.parse(r2dbcUrl()).mutate()
                .option(Option.valueOf("applicationName"), applicationName)
                .build();
    }

    /**
     * A driver factory of the located server whose sessions carry {@code applicationName} (not
     * pooled: each create() is a new session).
     */
    public static ConnectionFactory connectionFactory(String applicationName) {
        return ConnectionFactories.get(options(applicationName));
    }

    /** The host of the located server. */
    public static String host() {
        return String.valueOf(server().getRequiredValue(ConnectionFactoryOptions.HOST));
    }

    /** The port of the located server (5432 when its URL names none). */
    public static int port() {
        Object port = server().getValue(ConnectionFactoryOptions.PORT);
        return port == null ? 5432 : Integer.parseInt(String.valueOf(port));
    }

    /** The database of the located server. */
    public static String database() {
        return String.valueOf(server().getRequiredValue(ConnectionFactoryOptions.DATABASE));
    }

    private static ConnectionFactoryOptions server() {
        return ConnectionFactoryOptions.parse(r2dbcUrl());
    }

    private static Server locate() {
        // (a) explicit URL
        Server explicit = PROBE.fromExplicitUrl(URL_ENV, URL_PROPERTY);
        if (explicit != null) {
            return explicit;
        }

        // (b) Testcontainers
        if (dockerAvailable()) {
            return Containers.start();
        }

        // (c) local server, or (d) give up, saying how to provide one
        String localUrl = "r2dbc:postgresql://" + LOCAL_USER + "@" + LOCAL_HOST + ":" + LOCAL_PORT + "/" + LOCAL_DATABASE;
        return PROBE.local(LOCAL_HOST, LOCAL_PORT, LOCAL_USER, LOCAL_DATABASE, localUrl,
                () -> new PostgresqlConnectionFactory(PostgresqlConnectionConfiguration.builder()
                        .host(LOCAL_HOST)
                        .port(LOCAL_PORT)
                        .username(LOCAL_USER)
                        .database(LOCAL_DATABASE)
                        .applicationName("lagoon-tests")
                        .connectTimeout(Duration.ofSeconds(5))
                        .build()),
                whyNotLocal -> new IllegalStateException("No PostgreSQL available for tests. Provide one of:\n"
                        + "  1. set " + URL_ENV + "=r2dbc:postgresql://user:pass@host:port/db (or -D" + URL_PROPERTY + "=...),\n"
                        + "  2. start Docker, so that Testcontainers can run " + IMAGE + ",\n"
                        + "  3. run PostgreSQL on " + LOCAL_HOST + ":" + LOCAL_PORT + " with user " + LOCAL_USER
                        + " (trust auth, no password) and database " + LOCAL_DATABASE + ".\n"
                        + "Tried: " + URL_ENV + " unset; Docker not available; " + whyNotLocal + "."));
    }

    private static boolean dockerAvailable() {
        try {
            return DockerClientFactory.instance().isDockerAvailable();
        } catch (Throwable t) { // NoClassDefFoundError, IllegalStateException, ...: all mean "no Docker"
            return false;
        }
    }

    /** Hides the password of an R2DBC URL (the part between ':' and '@' of the authority). */
    static String mask(String url) {
        return ServerProbe.mask(url);
    }

    /** Kept apart so that Testcontainers classes are only touched when Docker is there. */
    private static final class Containers {

        static Server start() {
            @SuppressWarnings("resource") // stopped by the shutdown hook (and by Testcontainers' Ryuk)
            PostgreSQLContainer container = new PostgreSQLContainer(DockerImageName.parse(IMAGE));
            try {
                container.start();
            } catch (RuntimeException e) {
                throw new IllegalStateException("Docker is available but the " + IMAGE + " container did not start: " + e, e);
            }
            Runtime.getRuntime().addShutdownHook(new Thread(container::stop, "lagoon-postgres-container-stop"));
            String host = container.getHost();
            int port = container.getMappedPort(PostgreSQLContainer.POSTGRESQL_PORT);
            String user = container.getUsername();
            String password = container.getPassword();
            String database = container.getDatabaseName();
            ConnectionFactory factory = new PostgresqlConnectionFactory(PostgresqlConnectionConfiguration.builder()
                    .host(host)
                    .port(port)
                    .username(user)
                    .password(password)
                    .database(database)
                    .applicationName("lagoon-tests")
                    .connectTimeout(Duration.ofSeconds(10))
                    .build());
            String url = "r2dbc:postgresql://" + user + ":" + password + "@" + host + ":" + port + "/" + database;
            String version = PROBE.probeQuery(factory, "the " + IMAGE + " container");
            return new Server(factory, url, "PostgreSQL " + version + " in Testcontainers " + IMAGE + " at " + host
                    + ":" + port + " (user " + user + ", database " + database + ")");
        }
    }
}
