package dev.skiff.spring;

import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.skiff.handler.Job;
import dev.skiff.handler.KafkaRecord;
import dev.skiff.handler.Task;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Parameter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.springframework.core.DefaultParameterNameDiscoverer;
import org.springframework.util.ReflectionUtils;

/** One annotated bean method: how each parameter is taken from a task, and how it is called. */
final class SkiffMethod {
  private static final DefaultParameterNameDiscoverer NAMES = new DefaultParameterNameDiscoverer();

  private final Object bean;
  private final Method method;
  private final ObjectMapper mapper;
  private final List<Function<Task, Object>> args = new ArrayList<>();

  SkiffMethod(Object bean, Method method, ObjectMapper mapper, boolean topic) {
    this.bean = bean;
    this.method = method;
    this.mapper = mapper;
    ReflectionUtils.makeAccessible(method);
    Parameter[] params = method.getParameters();
    String[] names = NAMES.getParameterNames(method);
    for (int i = 0; i < params.length; i++) {
      args.add(binder(params[i], names == null ? null : names[i], topic));
    }
  }

  private Function<Task, Object> binder(Parameter p, String discovered, boolean topic) {
    Class<?> type = p.getType();
    JavaType javaType = mapper.getTypeFactory().constructType(p.getParameterizedType());
    if (type == Task.class) {
      return t -> t;
    }
    if (type == Job.class && !topic) {
      return Task::job;
    }
    if (type == KafkaRecord.class && topic) {
      return Task::record;
    }
    if (p.isAnnotationPresent(VariablesAsType.class) && !topic) {
      return t -> mapper.convertValue(t.variables(), javaType);
    }
    if (p.isAnnotationPresent(RecordValue.class) && topic) {
      return t -> mapper.convertValue(t.value(), javaType);
    }
    Variable v = p.getAnnotation(Variable.class);
    if (v != null && !topic) {
      String name = !v.value().isEmpty() ? v.value() : discovered;
      if (name == null) {
        throw new IllegalStateException(where() + ": parameter " + p.getName()
            + " needs @Variable(\"name\") or compiling with -parameters");
      }
      return t -> variable(t, name, type, javaType);
    }
    throw new IllegalStateException(where() + ": cannot bind parameter " + p.getName() + " ("
        + type.getSimpleName() + "): use Task, " + (topic ? "KafkaRecord or @RecordValue"
        : "Job, @Variable or @VariablesAsType"));
  }

  private Object variable(Task t, String name, Class<?> type, JavaType javaType) {
    Object raw = t.variables().get(name);
    if (raw == null && type.isPrimitive()) {
      throw new IllegalArgumentException("variable " + name + " is missing");
    }
    return mapper.convertValue(raw, javaType);
  }

  String where() {
    return method.getDeclaringClass().getSimpleName() + "." + method.getName();
  }

  /** Calls the method; its exception is rethrown as is (not wrapped). */
  Object invoke(Task task) throws Exception {
    Object[] values = new Object[args.size()];
    for (int i = 0; i < values.length; i++) {
      values[i] = args.get(i).apply(task);
    }
    try {
      return method.invoke(bean, values);
    } catch (InvocationTargetException e) {
      Throwable cause = e.getCause();
      if (cause instanceof Exception ex) {
        throw ex;
      }
      throw (Error) cause;
    }
  }

  /** The job's completion variables: a Map as is, another object through Jackson, null: none. */
  @SuppressWarnings("unchecked")
  Map<String, ?> variables(Object returned) {
    if (returned == null) {
      return null;
    }
    if (returned instanceof Map<?, ?> m) {
      return (Map<String, ?>) m;
    }
    return mapper.convertValue(returned, Map.class);
  }
}
