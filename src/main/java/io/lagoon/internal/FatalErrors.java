package io.lagoon.internal;

import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import io.r2dbc.spi.R2dbcTransientResourceException;
import java.net.SocketException;
import java.nio.channels.ClosedChannelException;
import java.util.Set;
import javax.net.ssl.SSLException;

/**
 * Which errors raised through a connection mean that the connection is gone, and which of those
 * also mean that the server (or the network to it) went away.
 *
 * <p>Drivers do not say it through the exception type alone: r2dbc-postgresql raises {@link
 * R2dbcNonTransientResourceException} for most SQLSTATE classes, so a {@code RAISE EXCEPTION}, a
 * statement timeout or a lock that could not be taken would look fatal, and r2dbc-mariadb raises
 * {@code R2dbcTimeoutException} both for a killed query and for a killed connection. So the
 * verdict reads the SQLSTATE, the vendor code and the type together, along the whole cause chain;
 * the strongest verdict of any link wins.
 *
 * <ul>
 *   <li>{@link #SERVER_GONE}: SQLSTATE class {@code 08} (connection exception; r2dbc-postgresql
 *       and r2dbc-mariadb also use it for their own "connection closed"), unless the driver
 *       raised it as a transient resource error (r2dbc-postgresql's full request queue); {@code
 *       57P01} admin shutdown or terminated backend, {@code 57P02} crash shutdown, {@code 57P03}
 *       cannot connect now, {@code 57P04} database dropped; a driver's non-transient resource
 *       error without a SQLSTATE; and the transport failing: {@link ClosedChannelException},
 *       {@link SocketException}, Netty's {@code NativeIoException} and Reactor Netty's {@code
 *       AbortedException} (matched by class name: no Netty dependency).
 *   <li>{@link #CONNECTION_GONE}: this one session ended: {@code 57P05} idle session timeout,
 *       {@code 25P03} idle-in-transaction timeout, MariaDB's connection killed ({@code 70100}
 *       with vendor code 1927; the same SQLSTATE with code 1317 is a killed query, which leaves
 *       the connection usable); an {@link SSLException} (this connection's TLS session failed).
 *   <li>{@link #NOT_FATAL}: everything else, whatever its type: every other SQL error leaves the
 *       connection usable ({@code P0001}, {@code 57014}, {@code 55P03}, {@code 25P02}, {@code
 *       23505}, {@code 42601}, MariaDB's {@code 45000}, lock wait timeouts...).
 * </ul>
 */
final class FatalErrors {

  static final int NOT_FATAL = 0;
  /** This connection is gone; the others are not suspect. */
  static final int CONNECTION_GONE = 1;
  /** This connection is gone and the server or the network went away: the idle ones are suspect. */
  static final int SERVER_GONE = 2;

  /** PostgreSQL's operator interventions that end every session (besides class 08). */
  private static final Set<String> SERVER_STATES = Set.of("57P01", "57P02", "57P03", "57P04");
  /** PostgreSQL's timeouts that end one idle session. */
  private static final Set<String> SESSION_STATES = Set.of("57P05", "25P03");
  /** MariaDB: ER_CONNECTION_KILLED, under SQLSTATE 70100 (shared with a killed query, 1317). */
  private static final String MARIADB_KILLED_STATE = "70100";
  private static final int MARIADB_CONNECTION_KILLED = 1927;
  /** Transport failures of Netty-based drivers, by class name (or a superclass's name). */
  private static final Set<String> TRANSPORT_CLASSES = Set.of(
      "io.netty.channel.unix.Errors$NativeIoException",
      "reactor.netty.channel.AbortedException");
  /** A bound on the cause chain, against cycles the identity check does not catch. */
  private static final int MAX_DEPTH = 32;

  private FatalErrors() {}

  /** Whether an error raised through a connection means that the connection is gone. */
  static boolean isFatal(Throwable error) {
    return classify(error) != NOT_FATAL;
  }

  /** Whether the error says the server or the network to it went away. */
  static boolean meansServerGone(Throwable error) {
    return classify(error) == SERVER_GONE;
  }

  /** The strongest verdict of any link of the cause chain. */
  static int classify(Throwable error) {
    int verdict = NOT_FATAL;
    Throwable t = error;
    for (int depth = 0; t != null && depth < MAX_DEPTH && verdict != SERVER_GONE; depth++) {
      verdict = Math.max(verdict, classifyOne(t));
      Throwable cause = t.getCause();
      t = cause == t ? null : cause;
    }
    return verdict;
  }

  private static int classifyOne(Throwable t) {
    if (t instanceof R2dbcException r) {
      String state = r.getSqlState();
      if (state == null || state.isEmpty()) {
        // The driver's own "connection closed": no server error behind it.
        return t instanceof R2dbcNonTransientResourceException ? SERVER_GONE : NOT_FATAL;
      }
      if (state.startsWith("08")) {
        return t instanceof R2dbcTransientResourceException ? NOT_FATAL : SERVER_GONE;
      }
      if (SERVER_STATES.contains(state)) {
        return SERVER_GONE;
      }
      if (SESSION_STATES.contains(state)) {
        return CONNECTION_GONE;
      }
      if (MARIADB_KILLED_STATE.equals(state) && r.getErrorCode() == MARIADB_CONNECTION_KILLED) {
        return CONNECTION_GONE;
      }
      return NOT_FATAL;
    }
    if (t instanceof ClosedChannelException || t instanceof SocketException) {
      return SERVER_GONE;
    }
    if (t instanceof SSLException) {
      return CONNECTION_GONE;
    }
    for (Class<?> c = t.getClass(); c != null && c != Throwable.class; c = c.getSuperclass()) {
      if (TRANSPORT_CLASSES.contains(c.getName())) {
        return SERVER_GONE;
      }
    }
    return NOT_FATAL;
  }
}
