package io.lagoon.testing;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Speaks just enough of PostgreSQL's wire protocol to make a driver send its password: answers
 * every startup with a request for a clear-text password, records the password it receives, and
 * rejects it with {@code 28P01 password authentication failed}. For tests where the real server
 * trusts every local connection, so a driver would never send the password at all.
 *
 * <p>Listens on 127.0.0.1 on an ephemeral port; one blocking thread per connection (never a
 * Reactor thread). Thread-safe.
 */
public final class PasswordRejectingServer implements AutoCloseable {

  private static final int SSL_REQUEST = 80877103;

  private final ServerSocket server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
  private final List<String> passwords = new CopyOnWriteArrayList<>();

  public PasswordRejectingServer() throws IOException {
    Thread acceptor = new Thread(this::acceptLoop, "password-rejecting-server");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  public int port() {
    return server.getLocalPort();
  }

  /** Every password a client sent, in order. */
  public List<String> passwordsReceived() {
    return List.copyOf(passwords);
  }

  @Override
  public void close() throws IOException {
    server.close();
  }

  private void acceptLoop() {
    while (!server.isClosed()) {
      try {
        Socket s = server.accept();
        Thread t = new Thread(() -> serve(s), "password-rejecting-connection");
        t.setDaemon(true);
        t.start();
      } catch (IOException e) {
        return;
      }
    }
  }

  private void serve(Socket socket) {
    try (socket) {
      DataInputStream in = new DataInputStream(socket.getInputStream());
      DataOutputStream out = new DataOutputStream(socket.getOutputStream());
      String user = "";
      for (;;) {
        int length = in.readInt();
        int protocol = in.readInt();
        byte[] rest = in.readNBytes(length - 8);
        if (protocol == SSL_REQUEST) {
          out.writeByte('N'); // no TLS here
          out.flush();
          continue;
        }
        user = parameter(rest, "user");
        break;
      }
      out.writeByte('R'); // AuthenticationCleartextPassword
      out.writeInt(8);
      out.writeInt(3);
      out.flush();
      if (in.readByte() != 'p') {
        return;
      }
      byte[] body = in.readNBytes(in.readInt() - 4);
      int end = body.length > 0 && body[body.length - 1] == 0 ? body.length - 1 : body.length;
      passwords.add(new String(body, 0, end, StandardCharsets.UTF_8));
      error(out, "28P01", "password authentication failed for user \"" + user + "\"");
    } catch (IOException e) {
      // the client went away
    }
  }

  private static String parameter(byte[] startup, String name) {
    String[] parts = new String(startup, StandardCharsets.UTF_8).split("\0");
    for (int i = 0; i + 1 < parts.length; i += 2) {
      if (parts[i].equals(name)) {
        return parts[i + 1];
      }
    }
    return "";
  }

  private static void error(DataOutputStream out, String code, String message) throws IOException {
    ByteArrayOutputStream fields = new ByteArrayOutputStream();
    field(fields, 'S', "FATAL");
    field(fields, 'V', "FATAL");
    field(fields, 'C', code);
    field(fields, 'M', message);
    fields.write(0);
    out.writeByte('E');
    out.writeInt(4 + fields.size());
    fields.writeTo(out);
    out.flush();
  }

  private static void field(ByteArrayOutputStream out, char type, String value) {
    out.write(type);
    out.writeBytes(value.getBytes(StandardCharsets.UTF_8));
    out.write(0);
  }
}
