package dev.skiff.handler;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** skiff's side of the protocol for the unit tests: accepts handlers, sends and reads frames. */
public final class FakeSkiff implements AutoCloseable {
  public final Path dir;
  public final Path path;
  private ServerSocketChannel server;

  public FakeSkiff() throws IOException {
    dir = Files.createTempDirectory("skiff-test");
    path = dir.resolve("handler.sock");
    listen();
  }

  void listen() throws IOException {
    Files.deleteIfExists(path);
    server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
    server.bind(UnixDomainSocketAddress.of(path));
  }

  /** Stops listening (the socket file goes away): a handler must retry. */
  void stopListening() throws IOException {
    server.close();
    Files.deleteIfExists(path);
  }

  public Peer accept() throws IOException {
    return new Peer(server.accept());
  }

  @Override
  public void close() throws IOException {
    server.close();
    Files.deleteIfExists(path);
    Files.deleteIfExists(dir);
  }

  public static Map<String, Object> task(String jobType, Map<String, Object> variables) {
    Map<String, Object> zeebe = new LinkedHashMap<>();
    zeebe.put("key", "2251799813685321");
    zeebe.put("process_instance_key", "2251799813685310");
    zeebe.put("bpmn_process_id", "p");
    zeebe.put("process_definition_version", 1);
    zeebe.put("element_id", "e");
    zeebe.put("retries", 3);
    zeebe.put("worker", "w");
    Map<String, Object> t = new LinkedHashMap<>();
    t.put("type", "task");
    t.put("id", "z-" + System.nanoTime());
    t.put("source", "zeebe");
    t.put("job_type", jobType);
    t.put("deadline", System.currentTimeMillis() + 30000);
    t.put("variables", variables);
    t.put("headers", Map.of("model", "v3"));
    t.put("zeebe", zeebe);
    return t;
  }

  public static Map<String, Object> record(String topic, Object value) {
    Map<String, Object> t = new LinkedHashMap<>();
    t.put("type", "task");
    t.put("id", "k-" + System.nanoTime());
    t.put("source", "kafka");
    t.put("topic", topic);
    t.put("deadline", System.currentTimeMillis() + 30000);
    t.put("attempt", 1);
    t.put("value", value);
    t.put("kafka", Map.of("topic", topic, "partition", 3, "offset", 17, "key", "k",
        "headers", Map.of(), "schema_id", 7));
    return t;
  }

  /** One accepted handler connection. */
  public static final class Peer implements AutoCloseable {
    final SocketChannel ch;
    final LinkedBlockingQueue<Map<String, Object>> frames = new LinkedBlockingQueue<>();
    volatile boolean eof;

    Peer(SocketChannel ch) {
      this.ch = ch;
      Thread t = new Thread(this::readLoop, "fake-skiff-reader");
      t.setDaemon(true);
      t.start();
    }

    @SuppressWarnings("unchecked")
    private void readLoop() {
      try {
        while (true) {
          ByteBuffer head = ByteBuffer.allocate(4);
          if (!readFully(head)) {
            break;
          }
          ByteBuffer body = ByteBuffer.allocate(head.flip().getInt());
          if (!readFully(body)) {
            break;
          }
          frames.add((Map<String, Object>) Json.parse(
              new String(body.array(), StandardCharsets.UTF_8)));
        }
      } catch (IOException e) {
        // the connection ended
      }
      eof = true;
      frames.add(Map.of("type", "<closed>"));
    }

    private boolean readFully(ByteBuffer b) throws IOException {
      while (b.hasRemaining()) {
        if (ch.read(b) < 0) {
          return false;
        }
      }
      return true;
    }

    public void send(Map<String, ?> frame) throws IOException {
      sendRaw(Json.write(frame).getBytes(StandardCharsets.UTF_8));
    }

    public void sendRaw(byte[] body) throws IOException {
      ByteBuffer b = ByteBuffer.allocate(4 + body.length).putInt(body.length).put(body).flip();
      while (b.hasRemaining()) {
        ch.write(b);
      }
    }

    public Map<String, Object> recv() throws InterruptedException {
      Map<String, Object> f = frames.poll(10, TimeUnit.SECONDS);
      assertNotNull(f, "no frame from the handler within 10 s");
      return f;
    }

    /** Nothing arrives for half a second. */
    public void assertSilent() throws InterruptedException {
      Map<String, Object> f = frames.poll(500, TimeUnit.MILLISECONDS);
      assertEquals(null, f, "expected silence");
    }

    public Map<String, Object> handshake(List<String> features, List<String> methods, int maxFrame)
        throws IOException, InterruptedException {
      Map<String, Object> hello = recv();
      assertEquals("hello", hello.get("type"));
      Map<String, Object> w = new LinkedHashMap<>();
      w.put("type", "welcome");
      w.put("version", 1);
      w.put("session", "s-1");
      w.put("max_frame", maxFrame);
      w.put("features", features);
      w.put("methods", methods);
      send(w);
      return hello;
    }

    public Map<String, Object> handshake() throws IOException, InterruptedException {
      return handshake(List.of("cancel", "extend"), List.of("publish_message", "produce"),
          4 << 20);
    }

    @Override
    public void close() throws IOException {
      ch.close();
    }
  }
}
