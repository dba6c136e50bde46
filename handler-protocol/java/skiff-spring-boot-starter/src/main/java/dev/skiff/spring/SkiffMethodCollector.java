package dev.skiff.spring;

import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;
import org.springframework.aop.support.AopUtils;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.core.MethodIntrospector;
import org.springframework.core.annotation.AnnotatedElementUtils;
import org.springframework.core.env.Environment;

/** Finds the {@link SkiffJob} and {@link SkiffTopic} methods of every bean. */
public class SkiffMethodCollector implements BeanPostProcessor {
  /** One annotated method: its bean, its route (placeholders resolved), job or topic. */
  record Found(Object bean, Method method, String route, boolean topic) {}

  private final Environment env;
  private final List<Found> found = new ArrayList<>();

  public SkiffMethodCollector(Environment env) {
    this.env = env;
  }

  @Override
  public Object postProcessAfterInitialization(Object bean, String beanName) {
    Class<?> type = AopUtils.getTargetClass(bean);
    MethodIntrospector.selectMethods(type, (MethodIntrospector.MetadataLookup<SkiffJob>)
        m -> AnnotatedElementUtils.findMergedAnnotation(m, SkiffJob.class))
        .forEach((m, a) -> add(bean, m, a.value(), false));
    MethodIntrospector.selectMethods(type, (MethodIntrospector.MetadataLookup<SkiffTopic>)
        m -> AnnotatedElementUtils.findMergedAnnotation(m, SkiffTopic.class))
        .forEach((m, a) -> add(bean, m, a.value(), true));
    return bean;
  }

  private synchronized void add(Object bean, Method m, String route, boolean topic) {
    found.add(new Found(bean, m, env.resolveRequiredPlaceholders(route), topic));
  }

  synchronized List<Found> found() {
    return List.copyOf(found);
  }
}
