package dev.skiff.handler;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A handler process: job and topic functions served over skiff's handler protocol (v1.4).
 *
 * <pre>{@code
 * Handler h = Handler.builder("risk-scorer").capacity(4)
 *     .job("risk-score", task -> Map.of("riskScore", 42))
 *     .build();
 * h.run();   // until skiff drains this handler
 * }</pre>
 *
 * <p>{@link #run()} connects to {@code $SKIFF_SOCKET} (default {@code /run/skiff/handler.sock}),
 * reconnecting with exponential backoff while skiff is not there or after a lost connection,
 * runs up to {@code capacity} functions at once (on virtual threads on JDK 21+, else on a pool
 * of platform threads) and returns after skiff sends {@code drain} and the tasks in flight are
 * answered. A task's function runs on its own thread; ping, cancel and replies are handled by the
 * connection's reader thread meanwhile.
 */
public final class Handler {
  private static final Logger LOG = Logger.getLogger("dev.skiff.handler");
  public static final String DEFAULT_SOCKET = "/run/skiff/handler.sock";
  public static final int PROTOCOL_VERSION = 1;

  private final String name;
  private final int capacity;
  private final String socketPath;
  private final boolean reconnect;
  private final boolean batch;
  private final long backoffInitialMs;
  private final long backoffMaxMs;
  private final Map<String, JobFunction> jobs;
  private final Map<String, TopicFunction> topics;
  private final ExecutorService executor;
  private final boolean ownExecutor;
  private volatile Connection conn;
  private volatile String session;
  private volatile boolean stopped;

  private Handler(Builder b) {
    name = b.name;
    capacity = b.capacity;
    socketPath = b.socketPath != null ? b.socketPath
        : System.getenv().getOrDefault("SKIFF_SOCKET", DEFAULT_SOCKET);
    reconnect = b.reconnect;
    batch = b.batch;
    backoffInitialMs = b.backoffInitial.toMillis();
    backoffMaxMs = b.backoffMax.toMillis();
    jobs = new LinkedHashMap<>(b.jobs);
    topics = new LinkedHashMap<>(b.topics);
    ownExecutor = b.executor == null;
    executor = ownExecutor ? defaultExecutor(capacity, b.virtualThreads) : b.executor;
  }

  public static Builder builder(String name) {
    return new Builder(name);
  }

  /** Configures a {@link Handler}; register at least one job type or topic. */
  public static final class Builder {
    private final String name;
    private int capacity = 1;
    private String socketPath;
    private boolean reconnect = true;
    private boolean batch = true;
    private boolean virtualThreads = true;
    private Duration backoffInitial = Duration.ofMillis(100);
    private Duration backoffMax = Duration.ofSeconds(5);
    private final Map<String, JobFunction> jobs = new LinkedHashMap<>();
    private final Map<String, TopicFunction> topics = new LinkedHashMap<>();
    private ExecutorService executor;

    private Builder(String name) {
      if (name == null || name.isEmpty()) {
        throw new IllegalArgumentException("a handler needs a non-empty name");
      }
      this.name = name;
    }

    /** Most tasks in flight on the connection (default 1). */
    public Builder capacity(int capacity) {
      if (capacity < 1) {
        throw new IllegalArgumentException("capacity must be >= 1");
      }
      this.capacity = capacity;
      return this;
    }

    /** The socket path (default {@code $SKIFF_SOCKET}, else {@value Handler#DEFAULT_SOCKET}). */
    public Builder socketPath(String path) {
      this.socketPath = path;
      return this;
    }

    /** Reconnect after a lost connection or while skiff is not there (default true). */
    public Builder reconnect(boolean reconnect) {
      this.reconnect = reconnect;
      return this;
    }

    /**
     * Batches (protocol 1.4, default true): the hello lists feature "batch", so skiff may send
     * several tasks in one {@code tasks} frame; when skiff's welcome lists it too, results that
     * are ready together leave in one {@code results} frame (within max_frame).
     */
    public Builder batch(boolean batch) {
      this.batch = batch;
      return this;
    }

    /** The reconnect backoff: starts at {@code initial}, doubles up to {@code max}. */
    public Builder backoff(Duration initial, Duration max) {
      this.backoffInitial = initial;
      this.backoffMax = max;
      return this;
    }

    /** Use virtual threads when the runtime has them (JDK 21+; default true). */
    public Builder virtualThreads(boolean use) {
      this.virtualThreads = use;
      return this;
    }

    /** Run the functions on this executor instead of the SDK's own (not shut down by the SDK). */
    public Builder executor(ExecutorService executor) {
      this.executor = executor;
      return this;
    }

    public Builder job(String jobType, JobFunction fn) {
      jobs.put(nonEmpty(jobType, "job type"), fn);
      return this;
    }

    public Builder topic(String topic, TopicFunction fn) {
      topics.put(nonEmpty(topic, "topic"), fn);
      return this;
    }

    public Handler build() {
      if (jobs.isEmpty() && topics.isEmpty()) {
        throw new IllegalStateException("register at least one job type or topic");
      }
      return new Handler(this);
    }

    private static String nonEmpty(String s, String what) {
      if (s == null || s.isEmpty()) {
        throw new IllegalArgumentException("a " + what + " must be non-empty");
      }
      return s;
    }
  }

  /** Virtual threads on JDK 21+, else platform threads, {@code capacity} of them kept alive. */
  static ExecutorService defaultExecutor(int capacity, boolean virtual) {
    if (virtual && Runtime.version().feature() >= 21) {
      try {
        return (ExecutorService) java.util.concurrent.Executors.class
            .getMethod("newVirtualThreadPerTaskExecutor").invoke(null);
      } catch (ReflectiveOperationException e) {
        LOG.warning("no virtual threads (" + e + "); using platform threads");
      }
    }
    AtomicInteger n = new AtomicInteger();
    // At most capacity tasks are open at once; a cancelled task's function may still run while
    // its credit is reused, so the pool grows beyond capacity rather than queueing behind it.
    ThreadPoolExecutor pool = new ThreadPoolExecutor(capacity, Integer.MAX_VALUE, 60,
        TimeUnit.SECONDS, new SynchronousQueue<>(), r -> {
          Thread t = new Thread(r, "skiff-task-" + n.incrementAndGet());
          t.setDaemon(true);
          return t;
        });
    return pool;
  }

  public String name() {
    return name;
  }

  public int capacity() {
    return capacity;
  }

  public List<String> jobTypes() {
    return new ArrayList<>(jobs.keySet());
  }

  public List<String> topics() {
    return new ArrayList<>(topics.keySet());
  }

  /** skiff's session id of the current connection, or null. */
  public String session() {
    return session;
  }

  /**
   * Serves until skiff drains this handler (or {@link #stop()}). Throws {@link ProtocolError} if
   * skiff refuses the hello, IOException if it cannot connect and {@code reconnect} is off.
   */
  public void run() throws IOException, InterruptedException {
    long delay = backoffInitialMs;
    try {
      while (!stopped) {
        SocketChannel ch = connect();
        if (ch != null) {
          Session s = serve(ch);
          if (s.drained || stopped) {
            return;
          }
          if (s.welcomed) {
            delay = backoffInitialMs;
          }
          LOG.warning("connection to skiff at " + socketPath + " lost");
        } else if (!reconnect) {
          throw new IOException("cannot connect to skiff at " + socketPath);
        }
        if (!reconnect) {
          return;
        }
        Thread.sleep(delay);
        delay = Math.min(delay * 2, backoffMaxMs);
      }
    } finally {
      if (ownExecutor) {
        executor.shutdown();
      }
    }
  }

  /** Ends {@link #run()}: closes the connection (skiff hands open tasks to others). */
  public void stop() {
    stopped = true;
    Connection c = conn;
    if (c != null) {
      c.abort();
    }
  }

  /** Publishes a Zeebe message on the current connection (see {@link Task#publishMessage(Map)}). */
  public Map<String, Object> publishMessage(Map<String, ?> params) {
    return current().call("publish_message", Calls.message(params));
  }

  public Map<String, Object> publishMessage(String name, String correlationKey,
      Map<String, ?> variables) {
    return publishMessage(Calls.message(name, correlationKey, variables));
  }

  /**
   * {@link #publishMessage(String, String, Map)} with the W3C trace context of the span the
   * message comes from (protocol 1.3; either may be null): the jobs it leads to continue it.
   */
  public Map<String, Object> publishMessage(String name, String correlationKey,
      Map<String, ?> variables, String traceparent, String tracestate) {
    return publishMessage(Calls.message(name, correlationKey, variables, traceparent, tracestate));
  }

  /** Writes a Kafka record on the current connection (see {@link Task#produce}). */
  public Map<String, Object> produce(String topic, Object value, String key,
      Map<String, String> headers) {
    return current().call("produce", Calls.produce(topic, value, key, headers));
  }

  /** Reads a secret on the current connection (see {@link Task#secret}). */
  public String secret(String reference) {
    return Calls.member(current().call("secret", Calls.one("secret", "reference", reference)),
        "secret", "value");
  }

  /** An OAuth2 access token on the current connection (see {@link Task#token}). */
  public String token(String audience) {
    return Calls.member(current().call("token", Calls.one("token", "audience", audience)),
        "token", "access_token");
  }

  private Connection current() {
    Connection c = conn;
    if (c == null) {
      throw new CallError("closed", "not connected to skiff");
    }
    return c;
  }

  private SocketChannel connect() {
    SocketChannel ch = null;
    try {
      ch = SocketChannel.open(StandardProtocolFamily.UNIX);
      ch.connect(UnixDomainSocketAddress.of(socketPath));
      return ch;
    } catch (IOException e) {
      LOG.fine("cannot connect to skiff at " + socketPath + ": " + e);
      if (ch != null) {
        try {
          ch.close();
        } catch (IOException ignored) {
          // nothing more to do with a socket that never connected
        }
      }
      return null;
    }
  }

  private record Session(boolean welcomed, boolean drained) {}

  private Session serve(SocketChannel ch) throws InterruptedException {
    Connection c = new Connection(ch);
    boolean drained = false;
    boolean welcomed = false;
    try {
      welcomed = handshake(c);
      if (welcomed) {
        conn = c;
        if (stopped) {
          c.abort();
        }
        drained = readLoop(c);
      }
    } finally {
      conn = null;
      c.close();
    }
    synchronized (c.lock) {
      while (c.running > 0) {
        c.lock.wait();
      }
    }
    return new Session(welcomed, drained);
  }

  private boolean handshake(Connection c) {
    Map<String, Object> hello = Frames.frame("hello");
    hello.put("version", PROTOCOL_VERSION);
    hello.put("name", name);
    hello.put("capacity", capacity);
    if (!jobs.isEmpty()) {
      hello.put("job_types", jobTypes());
    }
    if (!topics.isEmpty()) {
      hello.put("topics", topics());
    }
    hello.put("features", batch ? List.of("cancel", "batch") : List.of("cancel"));
    c.send(hello);
    while (true) {
      Map<String, Object> f = c.recv();
      if (f == null) {
        return false;
      }
      String type = (String) f.get("type");
      if (type.equals("error")) {
        throw new ProtocolError(String.valueOf(f.get("code")), String.valueOf(f.get("message")));
      }
      if (type.equals("welcome")) {
        welcome(c, f);
        return true;
      }
      if (f != Connection.SKIPPED) {
        LOG.severe("expected welcome, got " + type + "; closing");
        return false;
      }
    }
  }

  private void welcome(Connection c, Map<String, Object> f) {
    session = f.get("session") instanceof String s ? s : "";
    if (f.get("max_frame") instanceof Long m && m > 0 && m <= Integer.MAX_VALUE) {
      c.maxFrame = m.intValue();
    }
    c.features = names(f.get("features"));
    c.methods = names(f.get("methods"));
    LOG.info("connected to skiff, session " + session);
  }

  private static Set<String> names(Object v) {
    Set<String> out = new HashSet<>();
    if (v instanceof List<?> list) {
      for (Object o : list) {
        if (o instanceof String s) {
          out.add(s);
        }
      }
    }
    return Set.copyOf(out);
  }

  /** Dispatches frames until the connection ends; true if it was drained. */
  private boolean readLoop(Connection c) {
    while (true) {
      Map<String, Object> f = c.recv();
      if (f == null) {
        synchronized (c.lock) {
          return c.draining;
        }
      }
      if (f == Connection.SKIPPED) {
        continue;
      }
      switch ((String) f.get("type")) {
        case "task" -> startTask(c, f);
        case "tasks" -> startTasks(c, f);
        case "reply" -> c.resolve(String.valueOf(f.get("ref")), f);
        case "cancel" -> c.cancel(String.valueOf(f.get("id")), cancelReason(f.get("reason")));
        case "ping" -> {
          Map<String, Object> pong = Frames.frame("pong");
          pong.put("ref", f.get("ref") instanceof String r ? r : "");
          c.send(pong);
        }
        case "drain" -> drain(c);
        // an error with an index (a refused results item) keeps the session (SPEC §4.7)
        case "error" -> LOG.severe("skiff error " + f.get("code") + ": " + f.get("message")
            + (f.get("id") != null ? " (task " + f.get("id") + ")" : "")
            + (f.get("index") != null ? " (results item " + f.get("index") + ")" : ""));
        case "pong", "welcome" -> { }
        default -> LOG.warning("ignoring unknown frame type " + f.get("type"));
      }
    }
  }

  private static String cancelReason(Object reason) {
    return reason instanceof String r && !r.isEmpty() ? r : "job_gone";
  }

  private static void drain(Connection c) {
    LOG.info("skiff asks to drain; finishing the tasks in flight");
    synchronized (c.lock) {
      c.draining = true;
      if (c.inFlight == 0) {
        c.closeWhenFlushed();
      }
    }
  }

  /** A {@code tasks} frame (1.4): each item as if it had come alone, in order. */
  @SuppressWarnings("unchecked")
  private void startTasks(Connection c, Map<String, Object> f) {
    if (!(f.get("tasks") instanceof List<?> items) || items.isEmpty()) {
      LOG.severe("skiff sent a tasks frame without a non-empty tasks array; ignoring it");
      return;
    }
    int i = 0;
    for (Object item : items) {
      if (item instanceof Map<?, ?> m && "task".equals(m.get("type"))) {
        startTask(c, (Map<String, Object>) m);
      } else {
        LOG.severe("skiff sent a tasks frame whose item " + i + " is not a task; skipping it");
      }
      i++;
    }
  }

  private void startTask(Connection c, Map<String, Object> f) {
    if (!(f.get("id") instanceof String id) || id.isEmpty()) {
      LOG.severe("skiff sent a task without a string id; ignoring it");
      return;
    }
    Task task;
    try {
      task = Task.fromFrame(f);
    } catch (IllegalArgumentException e) {
      LOG.severe("skiff sent a malformed task " + id + ": " + e.getMessage());
      Map<String, Object> r = Frames.frame("kafka".equals(f.get("source")) ? "nack" : "fail");
      r.put("id", id);
      r.put("message", "malformed task frame: " + e.getMessage());
      c.send(r);
      return;
    }
    task.attach(c);
    synchronized (c.lock) {
      c.open.put(id, task);
      c.inFlight++;
      c.running++;
    }
    try {
      executor.execute(() -> runTask(c, task));
    } catch (RuntimeException e) {
      LOG.log(Level.SEVERE, "cannot start task " + id, e);
      finish(c, task, Results.encode(Results.failure(task, e), c.maxFrame));
    }
  }

  private void runTask(Connection c, Task task) {
    byte[] result;
    task.runner(Thread.currentThread());
    try {
      result = Results.encode(execute(task), c.maxFrame);
    } catch (RuntimeException | Error e) {
      LOG.log(Level.SEVERE, "could not answer task " + task.id(), e);
      result = Frames.encode(Results.failed(Results.ack(task),
          "could not build the result: " + Results.describe(e)));
      if (!task.isKafka()) {
        result = Frames.encode(Results.failed(Results.complete(task, null),
            "could not build the result: " + Results.describe(e)));
      }
    } finally {
      task.runner(null);
      Thread.interrupted();
    }
    finish(c, task, result);
  }

  private static void finish(Connection c, Task task, byte[] result) {
    synchronized (c.lock) {
      boolean owed = c.open.remove(task.id(), task); // not owed once skiff cancelled the task
      if (owed) {
        c.sendResult(result);
        c.resultDone();
      }
      c.running--;
      c.lock.notifyAll();
    }
  }

  private Map<String, Object> execute(Task task) {
    if (task.isKafka()) {
      TopicFunction fn = topics.get(task.topic());
      try {
        if (fn == null) {
          throw new JobFailed("no handler for topic " + task.topic());
        }
        fn.handle(task);
        return Results.ack(task);
      } catch (Exception | Error e) {
        return Results.nack(task, e);
      }
    }
    JobFunction fn = jobs.get(task.jobType());
    try {
      if (fn == null) {
        throw new JobFailed("no handler for job type " + task.jobType());
      }
      return Results.complete(task, fn.handle(task));
    } catch (Exception | Error e) {
      return Results.failure(task, e);
    }
  }
}
