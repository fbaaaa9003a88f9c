package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.test.TestKit;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.springframework.jdbc.core.JdbcOperations;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.jdbc.datasource.SimpleDriverDataSource;

/**
 * The R2DBC TestKit (the SPI's conformance tests) run through a Lagoon pool of one connection over
 * r2dbc-postgresql: every test borrows the same physical connection, so whatever one test leaves
 * behind on it, and whatever the handle does differently from the driver, shows.
 *
 * <p>The TestKit's tables live in a schema of their own (the database is shared with other test
 * runs); after each test the pool's one backend must still be the one it started with, and not be
 * left inside a transaction.
 */
class PostgresTestKitTest implements TestKit<String> {

  private static final Duration T = Duration.ofSeconds(30);
  private static final String ID = UUID.randomUUID().toString().substring(0, 8);
  /** The application_name of the pool's connection: only this backend is ever looked at. */
  private static final String MARKER = "lagoon-testkit-" + ID;
  private static final String SCHEMA = "lagoon_testkit_" + ID;

  private static ConnectionPool pool;
  private static JdbcTemplate jdbc;
  private static int backendPid;

  @BeforeAll
  static void createSchemaAndPool() {
    ConnectionFactoryOptions server = PostgresSupport.options(MARKER);
    jdbc = new JdbcTemplate(jdbcDataSource(server));
    jdbc.execute("CREATE SCHEMA " + SCHEMA);
    ConnectionFactory driver = ConnectionFactories.get(server.mutate()
        .option(Option.valueOf("schema"), SCHEMA)
        .build());
    pool = ConnectionPool.builder(driver).maxSize(1).initialSize(1).poolName("pg-testkit").build();
    assertThat(pool.warmup().block(T)).isNotNull();
    backendPid = pool.withConnection(Backends::pidOf).single().block(T);
  }

  @AfterAll
  static void dropSchemaAndPool() {
    if (pool != null) {
      pool.close().block(T);
    }
    if (jdbc != null) {
      jdbc.execute("DROP SCHEMA IF EXISTS " + SCHEMA + " CASCADE");
    }
  }

  /**
   * The TestKit sets up and drops its tables over JDBC, on the same server and schema. A lock
   * timeout keeps a DROP TABLE from waiting for good behind a transaction the pool failed to end
   * (the check below reports that case).
   */
  private static SimpleDriverDataSource jdbcDataSource(ConnectionFactoryOptions server) {
    String url = "jdbc:postgresql://" + PostgresSupport.host() + ":" + PostgresSupport.port() + "/"
        + PostgresSupport.database();
    Properties props = new Properties();
    props.setProperty("user", String.valueOf(server.getRequiredValue(ConnectionFactoryOptions.USER)));
    Object password = server.getValue(ConnectionFactoryOptions.PASSWORD);
    if (password != null) {
      props.setProperty("password", password.toString());
    }
    props.setProperty("currentSchema", SCHEMA);
    props.setProperty("ApplicationName", MARKER + "-jdbc");
    props.setProperty("options", "-c lock_timeout=10000 -c statement_timeout=30000");
    return new SimpleDriverDataSource(new org.postgresql.Driver(), url, props);
  }

  @AfterEach
  void thePoolsOneBackendServedTheTestAndWasLeftOutsideATransaction() {
    // The TestKit's usingWhen(create(), ..., close) completes only after close() did, and close()
    // completes once the pool has the connection back (reset included): the state is settled.
    PoolStats stats = pool.stats();
    assertThat(stats.acquired()).as("lent connections in %s", stats).isZero();
    assertThat(stats.created()).as("connections opened in %s", stats).isEqualTo(1);
    assertThat(stats.closed()).as("connections closed in %s", stats).isZero();
    List<Map<String, Object>> backends = jdbc.queryForList(
        "SELECT pid, state FROM pg_stat_activity WHERE application_name = ?", MARKER);
    assertThat(backends).as("the pool's backends").hasSize(1);
    assertThat(backends.get(0).get("pid")).as("the backend the pool started with")
        .isEqualTo(backendPid);
    assertThat((String) backends.get(0).get("state")).as("backend state")
        .doesNotStartWith("idle in transaction");
  }

  @Override
  public ConnectionFactory getConnectionFactory() {
    return pool;
  }

  @Override
  public JdbcOperations getJdbcOperations() {
    return jdbc;
  }

  @Override
  public String getPlaceholder(int index) {
    return "$" + (index + 1);
  }

  @Override
  public String getIdentifier(int index) {
    return getPlaceholder(index);
  }

  @Override
  public String blobType() {
    return "BYTEA";
  }

  @Override
  public String clobType() {
    return "TEXT";
  }

  @Override
  public String doGetSql(TestStatement statement) {
    if (statement == TestStatement.CREATE_TABLE_AUTOGENERATED_KEY) {
      return "CREATE TABLE test ( id SERIAL, test_value INTEGER )";
    }
    return TestKit.super.doGetSql(statement);
  }
}
