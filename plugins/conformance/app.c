/* `conformance app CONFIG`: deepstream-app's own config parser (parse_config_file in
 * deepstream_app_config_parser.c, with deepstream_config_file_parser.c's per-group parsers), compiled
 * unmodified from the DeepStream sources. Prints whether it parsed and what each group came out as. */
#include <stdio.h>
#include <string.h>

#include "deepstream_app.h"

static void str(GString* o, const char* s)
{
  g_string_append_c(o, '"');
  for (const char* p = s ? s : ""; *p; ++p) {
    if (*p == '"' || *p == '\\') g_string_append_c(o, '\\');
    if ((unsigned char)*p >= 0x20) g_string_append_c(o, *p);
  }
  g_string_append_c(o, '"');
}

int cmd_app(const char* path)
{
  static NvDsConfig config;  /* large: not on the stack */
  memset(&config, 0, sizeof config);
  gboolean ok = parse_config_file(&config, (gchar*)path);
  GString* o = g_string_new("{");
  g_string_append_printf(o, "\"parsed\": %s", ok ? "true" : "false");
  g_string_append_printf(o, ", \"file_loop\": %d", config.file_loop);
  g_string_append_printf(o, ", \"tiled_display\": {\"enable\": %d}", (int)config.tiled_display_config.enable);
  g_string_append(o, ", \"sources\": [");
  for (guint i = 0; i < config.num_source_sub_bins; ++i) {
    NvDsSourceConfig* s = &config.multi_source_config[i];
    g_string_append_printf(o, "%s{\"enable\": %d, \"type\": %d, \"num_sources\": %u, \"gpu_id\": %u, \"uri\": ",
                           i ? ", " : "", s->enable, (int)s->type, s->num_sources, s->gpu_id);
    str(o, s->uri);
    g_string_append(o, "}");
  }
  NvDsStreammuxConfig* m = &config.streammux_config;
  g_string_append_printf(o, "], \"streammux\": {\"batch_size\": %d, \"width\": %d, \"height\": %d, "
                         "\"live_source\": %d, \"enable_padding\": %d}",
                         m->batch_size, m->pipeline_width, m->pipeline_height, m->live_source, m->enable_padding);
  NvDsGieConfig* g = &config.primary_gie_config;
  g_string_append_printf(o, ", \"primary_gie\": {\"enable\": %d, \"unique_id\": %u, \"batch_size\": %u, "
                         "\"gpu_id\": %u, \"config_file_path\": ",
                         g->enable, g->unique_id, g->batch_size, g->gpu_id);
  str(o, g->config_file_path);
  g_string_append(o, "}, \"secondary_gies\": [");
  for (guint i = 0; i < config.num_secondary_gie_sub_bins; ++i) {
    NvDsGieConfig* sg = &config.secondary_gie_sub_bin_config[i];
    g_string_append_printf(o, "%s{\"enable\": %d, \"unique_id\": %u, \"operate_on_gie_id\": %d, "
                           "\"batch_size\": %u, \"config_file_path\": ", i ? ", " : "", sg->enable, sg->unique_id,
                           sg->operate_on_gie_id, sg->batch_size);
    str(o, sg->config_file_path);
    g_string_append(o, "}");
  }
  NvDsTrackerConfig* t = &config.tracker_config;
  g_string_append_printf(o, "], \"osd\": {\"enable\": %d}, \"tracker\": {\"enable\": %d, \"width\": %d, "
                         "\"height\": %d, \"gpu_id\": %u, \"display_tracking_id\": %d, \"tracking_id_reset_mode\": %u, "
                         "\"ll_lib_file\": ", config.osd_config.enable, t->enable, t->width, t->height, t->gpu_id,
                         t->display_tracking_id, t->tracking_id_reset_mode);
  str(o, t->ll_lib_file);
  g_string_append(o, ", \"ll_config_file\": ");
  str(o, t->ll_config_file);
  g_string_append(o, ", \"operate_on_class_ids\": ");
  str(o, t->operate_on_class_ids);
  g_string_append(o, "}");
  g_string_append(o, ", \"sinks\": [");
  for (guint i = 0; i < config.num_sink_sub_bins; ++i) {
    NvDsSinkSubBinConfig* k = &config.sink_bin_sub_bin_config[i];
    g_string_append_printf(o, "%s{\"enable\": %d, \"type\": %d, \"sync\": %d, \"container\": %d, \"codec\": %d, "
                           "\"output_file\": ", i ? ", " : "", k->enable, (int)k->type, k->sync,
                           (int)k->encoder_config.container, (int)k->encoder_config.codec);
    str(o, k->encoder_config.output_file_path);
    g_string_append(o, "}");
  }
  g_string_append(o, "]}");
  printf("%s\n", o->str);
  g_string_free(o, TRUE);
  return 0;
}
