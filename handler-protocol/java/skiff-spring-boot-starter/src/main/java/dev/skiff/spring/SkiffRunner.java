package dev.skiff.spring;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.skiff.handler.Handler;
import dev.skiff.handler.ProtocolError;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.context.ApplicationContext;
import org.springframework.context.ApplicationContextAware;
import org.springframework.context.SmartLifecycle;
import org.springframework.core.env.Environment;

/**
 * Serves the {@link SkiffJob}/{@link SkiffTopic} methods of all beans with a
 * {@link Handler} while the application context runs: started after every bean is ready, stopped
 * (the connection closed) when the context closes. After skiff drains the handler the application
 * exits with status 0 ({@code skiff.exit-on-drain}); when skiff refuses the hello it exits 1.
 */
public class SkiffRunner implements SmartLifecycle, ApplicationContextAware {
  private static final Log LOG = LogFactory.getLog(SkiffRunner.class);

  private final SkiffProperties props;
  private final ObjectMapper mapper;
  private final Environment env;
  private final SkiffMethodCollector collector;
  private final Map<String, SkiffMethod> jobs = new LinkedHashMap<>();
  private final Map<String, SkiffMethod> topics = new LinkedHashMap<>();
  private ApplicationContext context;
  private volatile Handler handler;
  private volatile Thread thread;
  private volatile boolean finished;

  public SkiffRunner(SkiffProperties props, ObjectMapper mapper, Environment env,
      SkiffMethodCollector collector) {
    this.collector = collector;
    this.props = props;
    this.mapper = mapper;
    this.env = env;
  }

  @Override
  public void setApplicationContext(ApplicationContext context) {
    this.context = context;
  }

  private static void register(Map<String, SkiffMethod> map, String route, SkiffMethod m) {
    SkiffMethod old = map.putIfAbsent(route, m);
    if (old != null) {
      throw new IllegalStateException(route + " is served by both " + old.where() + " and "
          + m.where());
    }
  }

  /** The handler serving the methods (null before the context started or without methods). */
  public Handler handler() {
    return handler;
  }

  @Override
  public void start() {
    for (SkiffMethodCollector.Found f : collector.found()) {
      register(f.topic() ? topics : jobs, f.route(),
          new SkiffMethod(f.bean(), f.method(), mapper, f.topic()));
    }
    if (jobs.isEmpty() && topics.isEmpty()) {
      LOG.warn("no @SkiffJob or @SkiffTopic methods: not connecting to skiff");
      finished = true;
      return;
    }
    handler = build();
    thread = new Thread(this::serve, "skiff-handler");
    thread.start();
  }

  private Handler build() {
    String name = props.getName() != null ? props.getName()
        : env.getProperty("spring.application.name", "spring-handler");
    Handler.Builder b = Handler.builder(name).capacity(props.getCapacity())
        .socketPath(props.getSocket()).virtualThreads(props.isVirtualThreads())
        .batch(props.isBatch())
        .backoff(props.getBackoffInitial(), props.getBackoffMax());
    jobs.forEach((type, m) -> b.job(type, task -> m.variables(m.invoke(task))));
    topics.forEach((topic, m) -> b.topic(topic, m::invoke));
    LOG.info("serving job types " + jobs.keySet() + " and topics " + topics.keySet()
        + " on " + props.getSocket());
    return b.build();
  }

  private void serve() {
    int status = 0;
    try {
      handler.run();
      LOG.info("skiff drained the handler");
    } catch (ProtocolError e) {
      LOG.error(e.getMessage());
      status = 1;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return;
    } catch (Exception e) {
      LOG.error("the skiff handler stopped", e);
      status = 1;
    } finally {
      finished = true;
    }
    if (props.isExitOnDrain() || status != 0) {
      int code = status;
      new Thread(() -> System.exit(SpringApplication.exit(context, () -> code)),
          "skiff-exit").start();
    }
  }

  /** True once the handler returned (drained, refused, or stopped). */
  public boolean isFinished() {
    return finished;
  }

  @Override
  public void stop() {
    Handler h = handler;
    if (h != null) {
      h.stop();
    }
    Thread t = thread;
    if (t != null && t != Thread.currentThread()) {
      try {
        t.join(30_000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    thread = null;
  }

  @Override
  public boolean isRunning() {
    return thread != null;
  }
}
