package io.lagoon.internal;

import static org.assertj.core.api.Assertions.assertThat;

import io.r2dbc.spi.R2dbcBadGrammarException;
import io.r2dbc.spi.R2dbcDataIntegrityViolationException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.R2dbcPermissionDeniedException;
import io.r2dbc.spi.R2dbcRollbackException;
import io.r2dbc.spi.R2dbcTimeoutException;
import io.r2dbc.spi.R2dbcTransientResourceException;
import java.io.IOException;
import java.net.SocketException;
import java.nio.channels.ClosedChannelException;
import java.util.stream.Stream;
import javax.net.ssl.SSLException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Which errors mark a connection broken: the SQLSTATE, the vendor code and the type together, as
 * r2dbc-postgresql and r2dbc-mariadb raise them, along the cause chain.
 */
class FatalErrorsTest {

  /** r2dbc-postgresql raises most SQLSTATE classes as this type. */
  private static Throwable pg(String state) {
    return new R2dbcNonTransientResourceException("postgres says " + state, state, 0, "SELECT 1");
  }

  static Stream<Arguments> serverGone() {
    return Stream.of(
        Arguments.of("08006 the driver's connection closed", pg("08006")),
        Arguments.of("08003 connection does not exist", pg("08003")),
        Arguments.of("08000 MariaDB connection error",
            new R2dbcNonTransientResourceException("Connection unexpectedly closed", "08000")),
        Arguments.of("08S01 MariaDB server shutdown",
            new R2dbcNonTransientResourceException("Server shutdown in progress", "08S01", 1053)),
        Arguments.of("57P01 admin shutdown, pg_terminate_backend", pg("57P01")),
        Arguments.of("57P02 crash shutdown", pg("57P02")),
        Arguments.of("57P03 cannot connect now", pg("57P03")),
        Arguments.of("57P04 database dropped", pg("57P04")),
        Arguments.of("non-transient resource error without SQLSTATE",
            new R2dbcNonTransientResourceException("The connection is closed")),
        Arguments.of("non-transient resource error with an empty SQLSTATE",
            new R2dbcNonTransientResourceException("closed", "")),
        Arguments.of("ClosedChannelException", new ClosedChannelException()),
        Arguments.of("SocketException", new SocketException("Connection reset")),
        Arguments.of("Reactor Netty AbortedException",
            new reactor.netty.channel.AbortedException("Connection has been closed")),
        Arguments.of("57P01 as the cause of a wrapper",
            new RuntimeException("wrapped", pg("57P01"))),
        Arguments.of("a socket error under an ordinary SQL error",
            new R2dbcBadGrammarException("bad", "42601", 0, (String) null,
                new SocketException("Broken pipe"))));
  }

  static Stream<Arguments> connectionGone() {
    return Stream.of(
        Arguments.of("57P05 idle session timeout", pg("57P05")),
        Arguments.of("25P03 idle-in-transaction timeout", pg("25P03")),
        Arguments.of("MariaDB connection killed (70100, 1927)",
            new R2dbcTimeoutException("Connection was killed", "70100", 1927)),
        Arguments.of("SSLException", new SSLException("bad record MAC")),
        Arguments.of("25P03 under a wrapper", new IllegalStateException("x", pg("25P03"))));
  }

  static Stream<Arguments> notFatal() {
    return Stream.of(
        Arguments.of("P0001 RAISE EXCEPTION", pg("P0001")),
        Arguments.of("57014 statement timeout, query cancelled", pg("57014")),
        Arguments.of("55P03 lock not available (NOWAIT)", pg("55P03")),
        Arguments.of("25P02 in failed transaction", pg("25P02")),
        Arguments.of("53100 disk full", pg("53100")),
        Arguments.of("XX000 internal error", pg("XX000")),
        Arguments.of("23505 unique violation",
            new R2dbcDataIntegrityViolationException("duplicate", "23505")),
        Arguments.of("42601 syntax error", new R2dbcBadGrammarException("syntax", "42601")),
        Arguments.of("40001 serialization failure", new R2dbcRollbackException("retry", "40001")),
        Arguments.of("42501 permission denied",
            new R2dbcPermissionDeniedException("denied", "42501")),
        Arguments.of("MariaDB query killed (70100, 1317)",
            new R2dbcTimeoutException("Query execution was interrupted", "70100", 1317)),
        Arguments.of("MariaDB SIGNAL SQLSTATE 45000",
            new R2dbcTransientResourceException("signalled", "45000", 1644)),
        Arguments.of("MariaDB lock wait timeout (HY000, 1205)",
            new R2dbcTransientResourceException("Lock wait timeout exceeded", "HY000", 1205)),
        Arguments.of("MariaDB duplicate key (23000, 1062)",
            new R2dbcDataIntegrityViolationException("Duplicate entry", "23000", 1062)),
        Arguments.of("MariaDB value decoding error (H1000)",
            new R2dbcNonTransientResourceException("Short overflow", "H1000", 9000)),
        Arguments.of("08006 raised as transient: the driver's request queue is full",
            new R2dbcTransientResourceException("request queue limit exceeded", "08006")),
        Arguments.of("transient resource error without SQLSTATE",
            new R2dbcTransientResourceException("busy")),
        Arguments.of("the pool's dead-handle error", new IllegalStateException("returned")),
        Arguments.of("a plain IOException", new IOException("read failed")),
        Arguments.of("an ordinary error wrapping an ordinary error",
            new RuntimeException("outer", pg("P0001"))));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("serverGone")
  void meansTheServerWentAway(String what, Throwable error) {
    assertThat(FatalErrors.classify(error)).isEqualTo(FatalErrors.SERVER_GONE);
    assertThat(FatalErrors.isFatal(error)).isTrue();
    assertThat(FatalErrors.meansServerGone(error)).isTrue();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("connectionGone")
  void meansOnlyThisConnectionIsGone(String what, Throwable error) {
    assertThat(FatalErrors.classify(error)).isEqualTo(FatalErrors.CONNECTION_GONE);
    assertThat(FatalErrors.isFatal(error)).isTrue();
    assertThat(FatalErrors.meansServerGone(error)).isFalse();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("notFatal")
  void leavesTheConnectionUsable(String what, Throwable error) {
    assertThat(FatalErrors.classify(error)).isEqualTo(FatalErrors.NOT_FATAL);
    assertThat(FatalErrors.isFatal(error)).isFalse();
    assertThat(FatalErrors.meansServerGone(error)).isFalse();
  }

  @Test
  void nettysNativeIoErrorMeansTheServerWentAway() {
    // Its class needs Netty's native transport loaded (epoll: Linux on x86_64 here).
    Assumptions.assumeTrue(io.netty.channel.epoll.Epoll.isAvailable(),
        "Netty's epoll transport is not available on this platform");
    Throwable reset = new io.netty.channel.unix.Errors.NativeIoException("recvAddress", -104);
    assertThat(FatalErrors.classify(reset)).isEqualTo(FatalErrors.SERVER_GONE);
    assertThat(FatalErrors.classify(new RuntimeException("wrapped", reset)))
        .isEqualTo(FatalErrors.SERVER_GONE);
  }

  @Test
  void theStrongestVerdictAlongTheChainWins() {
    Throwable sessionUnderServer = new R2dbcNonTransientResourceException("closed", "08006", 0,
        (String) null, pg("57P05"));
    Throwable serverUnderSession = new R2dbcTimeoutException("killed", "70100", 1927,
        (String) null, new ClosedChannelException());
    assertThat(FatalErrors.classify(sessionUnderServer)).isEqualTo(FatalErrors.SERVER_GONE);
    assertThat(FatalErrors.classify(serverUnderSession)).isEqualTo(FatalErrors.SERVER_GONE);
  }

  @Test
  void aCycleInTheCauseChainEnds() {
    RuntimeException a = new RuntimeException("a");
    RuntimeException b = new RuntimeException("b", a);
    a.initCause(b);
    assertThat(FatalErrors.classify(a)).isEqualTo(FatalErrors.NOT_FATAL);

    RuntimeException c = new RuntimeException("c");
    RuntimeException d = new RuntimeException("d", c);
    c.initCause(new RuntimeException("e", d));
    RuntimeException top = new RuntimeException("top", c);
    assertThat(FatalErrors.classify(top)).isEqualTo(FatalErrors.NOT_FATAL);
  }
}
