package io.lagoon.testing;

import io.r2dbc.spi.ConnectionFactoryOptions;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import org.jspecify.annotations.Nullable;

/**
 * A TCP proxy for fault injection in tests: in-process, non-blocking (one NIO selector on one
 * thread), listening on {@code 127.0.0.1} on an ephemeral port and forwarding every connection to
 * a target, by default the test PostgreSQL. On command it
 *
 * <ul>
 *   <li>{@link #resetAll() resets} every open connection, both ways (SO_LINGER 0, then close: each
 *       peer receives a TCP RST);
 *   <li>{@link #refuse(boolean) refuses} new connections: each is accepted and reset at once, so a
 *       client sees "connection reset" as from a host that rejects it;
 *   <li>{@link #blackHole(boolean) black-holes} traffic: new and open connections stay open, bytes
 *       and closes are held in both directions, nothing is answered or reset; when the hole closes,
 *       everything that waited is delivered in order;
 *   <li>{@link #latency(Duration) delays} every chunk of bytes (and every close) by a fixed time,
 *       in both directions.
 * </ul>
 *
 * <p>A command returns once the proxy's thread has applied it. Bytes held by a black hole are
 * bounded per direction ({@value #HOLD_LIMIT} bytes); beyond that the proxy stops reading, which
 * pushes back on the sender through TCP. Thread-safe; the counters may be read at any time.
 */
public final class FaultProxy implements AutoCloseable {

  static final int HOLD_LIMIT = 4 << 20;
  private static final int CHUNK = 16 * 1024;
  private static final Duration COMMAND_TIMEOUT = Duration.ofSeconds(10);
  private static final AtomicInteger THREADS = new AtomicInteger();

  private final InetSocketAddress target;
  private final Selector selector;
  private final ServerSocketChannel listener;
  private final Thread thread;
  private final ConcurrentLinkedQueue<Runnable> commands = new ConcurrentLinkedQueue<>();
  private final Set<Link> links = new HashSet<>();
  private volatile boolean running = true;
  private volatile @Nullable Throwable crash;

  // state owned by the proxy's thread
  private final ByteBuffer readBuffer = ByteBuffer.allocateDirect(CHUNK);
  private boolean refusing;
  private boolean holding;
  private long latencyNanos;

  private final AtomicLong accepted = new AtomicLong();
  private final AtomicLong refused = new AtomicLong();
  private final AtomicLong reset = new AtomicLong();
  private final AtomicLong upstreamFailures = new AtomicLong();
  private final AtomicLong bytesForwarded = new AtomicLong();
  private final AtomicInteger open = new AtomicInteger();

  private FaultProxy(InetSocketAddress target) throws IOException {
    this.target = target;
    this.selector = Selector.open();
    this.listener = ServerSocketChannel.open();
    listener.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 256);
    listener.configureBlocking(false);
    listener.register(selector, SelectionKey.OP_ACCEPT);
    this.thread = new Thread(this::loop, "lagoon-fault-proxy-" + THREADS.incrementAndGet());
    thread.setDaemon(true);
  }

  /** A proxy to {@code host:port}, started. */
  public static FaultProxy to(String host, int port) {
    try {
      FaultProxy proxy = new FaultProxy(new InetSocketAddress(host, port));
      proxy.thread.start();
      return proxy;
    } catch (IOException e) {
      throw new IllegalStateException("FaultProxy: cannot listen on 127.0.0.1: " + e, e);
    }
  }

  /** A proxy to the test PostgreSQL that {@link PostgresSupport} located, started. */
  public static FaultProxy toPostgres() {
    return to(PostgresSupport.host(), PostgresSupport.port());
  }

  /**
   * Driver options for the test PostgreSQL reached through this proxy, with {@code
   * applicationName} as the marker that tells this test's backends from everyone else's.
   */
  public ConnectionFactoryOptions postgresOptions(String applicationName) {
    return PostgresSupport.options(applicationName).mutate()
        .option(ConnectionFactoryOptions.HOST, host())
        .option(ConnectionFactoryOptions.PORT, port())
        .build();
  }

  /** The host clients connect to: always {@code 127.0.0.1}. */
  public String host() {
    return "127.0.0.1";
  }

  /** The ephemeral port the proxy listens on. */
  public int port() {
    return listener.socket().getLocalPort();
  }

  /** Where connections are forwarded. */
  public InetSocketAddress target() {
    return target;
  }

  /** Resets every open connection, both ways; new connections are forwarded as before. */
  public void resetAll() {
    run(() -> {
      for (Link link : new ArrayList<>(links)) {
        link.reset();
      }
    });
  }

  /** While on, every new connection is accepted and reset at once; open ones are untouched. */
  public void refuse(boolean on) {
    run(() -> refusing = on);
  }

  /**
   * While on, nothing is delivered in either direction on any connection, new or open: not a
   * byte, not a close, not a reset. Turning it off delivers what waited, in order.
   */
  public void blackHole(boolean on) {
    run(() -> {
      holding = on;
      if (!on) {
        for (Link link : new ArrayList<>(links)) {
          link.flushBoth();
        }
      }
    });
  }

  /** Delays every chunk of bytes (and every close) read from now on; zero for none. */
  public void latency(Duration delay) {
    if (delay.isNegative()) {
      throw new IllegalArgumentException("latency (" + delay + ") must not be negative");
    }
    run(() -> latencyNanos = delay.toNanos());
  }

  /** Back to plain forwarding: no refusal, no black hole (what waited is delivered), no latency. */
  public void heal() {
    refuse(false);
    latency(Duration.ZERO);
    blackHole(false);
  }

  /** Client connections accepted and forwarded (refused ones not included). */
  public long accepted() {
    return accepted.get();
  }

  /** Client connections accepted and reset at once while refusing. */
  public long refused() {
    return refused.get();
  }

  /** Connections reset by {@link #resetAll()}, or because their target refused or reset them. */
  public long resets() {
    return reset.get();
  }

  /** Connects to the target that failed. */
  public long upstreamFailures() {
    return upstreamFailures.get();
  }

  /** Bytes delivered, both directions. */
  public long bytesForwarded() {
    return bytesForwarded.get();
  }

  /** Connections currently open through the proxy. */
  public int openConnections() {
    return open.get();
  }

  /** Every connection attempt the proxy has seen: forwarded and refused. */
  public long connectAttempts() {
    return accepted.get() + refused.get();
  }

  /** Resets every connection, stops listening and stops the proxy's thread. */
  @Override
  public void close() {
    try {
      if (thread.isAlive() && running && crash == null) {
        run(() -> running = false); // the loop resets every link as it ends
      }
      thread.join(COMMAND_TIMEOUT.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      closeQuietly(listener);
      try {
        selector.close();
      } catch (IOException e) {
        // closing anyway
      }
    }
  }

  @Override
  public String toString() {
    return "FaultProxy[127.0.0.1:" + port() + " -> " + target.getHostString() + ":"
        + target.getPort() + ", open=" + open + ", accepted=" + accepted + ", refused=" + refused
        + ", resets=" + reset + "]";
  }

  // ---------------------------------------------------------------- commands

  private void run(Runnable command) {
    Throwable failed = crash;
    if (failed != null) {
      throw new IllegalStateException("FaultProxy's thread died: " + failed, failed);
    }
    if (!running) {
      throw new IllegalStateException("FaultProxy is closed");
    }
    CompletableFuture<Void> done = new CompletableFuture<>();
    commands.add(() -> {
      try {
        command.run();
        done.complete(null);
      } catch (RuntimeException e) {
        done.completeExceptionally(e);
      }
    });
    selector.wakeup();
    try {
      done.get(COMMAND_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for FaultProxy", e);
    } catch (ExecutionException e) {
      throw new IllegalStateException("FaultProxy command failed: " + e.getCause(), e.getCause());
    } catch (TimeoutException e) {
      throw new IllegalStateException("FaultProxy did not apply a command within "
          + COMMAND_TIMEOUT.toSeconds() + " s (thread " + thread.getState() + ")", e);
    }
  }

  // ---------------------------------------------------------------- the selector loop

  private void loop() {
    try {
      while (running) {
        long wait = nextDueMillis();
        if (wait < 0) {
          selector.selectNow();
        } else {
          selector.select(wait);
        }
        for (Runnable command; (command = commands.poll()) != null; ) {
          command.run();
        }
        for (SelectionKey key : selector.selectedKeys()) {
          handle(key);
        }
        selector.selectedKeys().clear();
        for (Link link : new ArrayList<>(links)) {
          link.flushBoth(); // chunks whose latency has passed
        }
      }
    } catch (ClosedSelectorException e) {
      // closed from close()
    } catch (Throwable t) {
      crash = t;
    } finally {
      for (Link link : new ArrayList<>(links)) {
        link.reset();
      }
      running = false;
      for (Runnable command; (command = commands.poll()) != null; ) {
        command.run(); // completes waiting callers; the links are gone
      }
    }
  }

  /** Milliseconds until the earliest delayed chunk is due: 0 to block, -1 if one is due now. */
  private long nextDueMillis() {
    if (holding) {
      return 0;
    }
    long now = System.nanoTime();
    long earliest = Long.MAX_VALUE;
    for (Link link : links) {
      earliest = Math.min(earliest, link.up.dueIn(now));
      earliest = Math.min(earliest, link.down.dueIn(now));
    }
    if (earliest == Long.MAX_VALUE) {
      return 0;
    }
    if (earliest <= 0) {
      return -1;
    }
    return Math.max(1, TimeUnit.NANOSECONDS.toMillis(earliest + 999_999));
  }

  private void handle(SelectionKey key) {
    if (!key.isValid()) {
      return;
    }
    if (key.channel() == listener) {
      if (key.isAcceptable()) {
        acceptAll();
      }
      return;
    }
    Link link = (Link) key.attachment();
    try {
      if (key.isConnectable()) {
        link.connected();
        return;
      }
      if (key.isValid() && key.isWritable()) {
        link.flushBoth();
      }
      if (key.isValid() && key.isReadable()) {
        link.readFrom((SocketChannel) key.channel());
      }
    } catch (IOException e) {
      link.failed(key.channel() == link.client);
    }
  }

  private void acceptAll() {
    for (;;) {
      SocketChannel client;
      try {
        client = listener.accept();
      } catch (IOException e) {
        return;
      }
      if (client == null) {
        return;
      }
      if (refusing) {
        refused.incrementAndGet();
        resetChannel(client);
        continue;
      }
      accepted.incrementAndGet();
      try {
        new Link(client).connect();
      } catch (IOException e) {
        upstreamFailures.incrementAndGet();
        resetChannel(client);
      }
    }
  }

  private static void resetChannel(SocketChannel channel) {
    try {
      channel.setOption(StandardSocketOptions.SO_LINGER, 0);
    } catch (IOException | RuntimeException e) {
      // closing anyway
    }
    closeQuietly(channel);
  }

  private static void closeQuietly(java.nio.channels.Channel channel) {
    try {
      channel.close();
    } catch (IOException e) {
      // nothing left to do
    }
  }

  // ---------------------------------------------------------------- one proxied connection

  /** What travels in one direction: bytes, then possibly an end of stream or a reset. */
  private final class Pipe {
    private final ArrayDeque<Chunk> queue = new ArrayDeque<>();
    private final Supplier<SocketChannel> destination;
    private long held;
    private boolean sourceDone;

    Pipe(Supplier<SocketChannel> destination) {
      this.destination = destination;
    }

    boolean mayRead() {
      return !sourceDone && held < HOLD_LIMIT;
    }

    boolean wantsWrite() {
      Chunk head = queue.peek();
      return !holding && head != null && head.data != null && head.data.hasRemaining()
          && head.started;
    }

    void add(Chunk chunk) {
      queue.add(chunk);
      if (chunk.data != null) {
        held += chunk.data.remaining();
      }
    }

    long dueIn(long now) {
      Chunk head = queue.peek();
      // a chunk partly written waits for OP_WRITE, not for the clock
      return head == null || head.started ? Long.MAX_VALUE : head.dueNanos - now;
    }

    /**
     * Delivers what is due; returns END or RESET when the source's end was delivered, else null.
     */
    @Nullable Kind flush() throws IOException {
      if (holding) {
        return null;
      }
      long now = System.nanoTime();
      for (Chunk head; (head = queue.peek()) != null; ) {
        if (head.dueNanos - now > 0) {
          return null;
        }
        if (head.kind != Kind.DATA) {
          queue.poll();
          return head.kind;
        }
        head.started = true;
        int n = destination.get().write(head.data);
        bytesForwarded.addAndGet(n);
        held -= n;
        if (head.data.hasRemaining()) {
          return null; // the destination's buffer is full: OP_WRITE resumes
        }
        queue.poll();
      }
      return null;
    }
  }

  private enum Kind { DATA, END, RESET }

  private static final class Chunk {
    final Kind kind;
    final @Nullable ByteBuffer data;
    final long dueNanos;
    boolean started;

    Chunk(Kind kind, @Nullable ByteBuffer data, long dueNanos) {
      this.kind = kind;
      this.data = data;
      this.dueNanos = dueNanos;
    }
  }

  private final class Link {
    final SocketChannel client;
    final SocketChannel server;
    final SelectionKey clientKey;
    SelectionKey serverKey;
    /** client to server */
    final Pipe up = new Pipe(this::server);
    /** server to client */
    final Pipe down = new Pipe(this::client);
    boolean serverConnected;
    boolean upEnded;
    boolean downEnded;
    boolean closed;

    Link(SocketChannel client) throws IOException {
      this.client = client;
      client.configureBlocking(false);
      client.setOption(StandardSocketOptions.TCP_NODELAY, true);
      this.server = SocketChannel.open();
      server.configureBlocking(false);
      server.setOption(StandardSocketOptions.TCP_NODELAY, true);
      this.clientKey = client.register(selector, 0, this);
      this.serverKey = server.register(selector, 0, this);
      links.add(this);
      open.incrementAndGet();
    }

    SocketChannel server() {
      return server;
    }

    SocketChannel client() {
      return client;
    }

    void connect() throws IOException {
      try {
        if (server.connect(target)) {
          connected();
        } else {
          serverKey.interestOps(SelectionKey.OP_CONNECT);
        }
      } catch (IOException e) {
        dropLink();
        throw e;
      }
    }

    void connected() {
      try {
        server.finishConnect();
      } catch (IOException e) {
        upstreamFailures.incrementAndGet();
        reset();
        return;
      }
      serverConnected = true;
      updateInterest();
    }

    void readFrom(SocketChannel source) throws IOException {
      Pipe pipe = source == client ? up : down;
      long due = System.nanoTime() + latencyNanos;
      while (pipe.mayRead()) {
        readBuffer.clear();
        int n = source.read(readBuffer);
        if (n < 0) {
          pipe.sourceDone = true;
          pipe.add(new Chunk(Kind.END, null, due));
          break;
        }
        if (n == 0) {
          break;
        }
        readBuffer.flip();
        ByteBuffer chunk = ByteBuffer.allocate(n); // only what was read: small messages stay small
        chunk.put(readBuffer).flip();
        pipe.add(new Chunk(Kind.DATA, chunk, due));
        if (n < CHUNK) {
          break; // drained for now
        }
      }
      flushBoth();
    }

    /** The source of one direction failed (reset by its peer): pass the reset on, in order. */
    void failed(boolean clientSide) {
      if (closed) {
        return;
      }
      Pipe pipe = clientSide ? up : down;
      pipe.sourceDone = true;
      pipe.add(new Chunk(Kind.RESET, null, System.nanoTime() + latencyNanos));
      flushBoth();
    }

    void flushBoth() {
      if (closed || !serverConnected) {
        return;
      }
      try {
        if (!upEnded) {
          Kind end = up.flush();
          if (end == Kind.RESET) {
            reset();
            return;
          }
          if (end == Kind.END) {
            upEnded = true;
            server.shutdownOutput();
          }
        }
        if (!downEnded) {
          Kind end = down.flush();
          if (end == Kind.RESET) {
            reset();
            return;
          }
          if (end == Kind.END) {
            downEnded = true;
            client.shutdownOutput();
          }
        }
      } catch (IOException e) {
        reset(); // a destination that cannot take bytes is gone: reset both sides
        return;
      }
      if (upEnded && downEnded) {
        close();
        return;
      }
      updateInterest();
    }

    void updateInterest() {
      if (closed) {
        return;
      }
      int clientOps = (up.mayRead() ? SelectionKey.OP_READ : 0)
          | (down.wantsWrite() ? SelectionKey.OP_WRITE : 0);
      int serverOps = (down.mayRead() ? SelectionKey.OP_READ : 0)
          | (up.wantsWrite() ? SelectionKey.OP_WRITE : 0);
      clientKey.interestOps(clientOps);
      serverKey.interestOps(serverOps);
    }

    void reset() {
      if (closed) {
        return;
      }
      reset.incrementAndGet();
      resetChannel(client);
      resetChannel(server);
      dropLink();
    }

    void close() {
      closeQuietly(client);
      closeQuietly(server);
      dropLink();
    }

    private void dropLink() {
      if (!closed) {
        closed = true;
        links.remove(this);
        open.decrementAndGet();
        clientKey.cancel();
        serverKey.cancel();
        closeQuietly(client);
        closeQuietly(server);
      }
    }
  }
}
