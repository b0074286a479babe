// The contour components as an nvdsvideotemplate custom library (NVIDIA's IDSCustomLibrary,
// gst-nvdsvideotemplate/includes/nvdscustomlib_base.hpp), metadata only, one instance per place:
//   ... nvtracker ! nvdsvideotemplate customlib-name=libnvds_fbtool_contour.so customlib-props="stage:square"
//       ! nvinfer config-file-path=config_infer_secondary_facemesh.txt
//       ! nvdsvideotemplate customlib-name=libnvds_fbtool_contour.so customlib-props="stage:apply" ! ...
// gst_nvdsvideotemplate_submit_input_buffer pushes the buffer on as it is when ProcessBuffer returns
// Buffer_Ok; the frame's pixels are not touched. The same C ABI (fbtool_contour.h) can be called from
// another custom library or a pad probe instead.
#include <cuda_runtime_api.h>  // nvdscustomlib_interface.hpp uses cudaStream_t without including it

#include <cstring>
#include <string>

#include "fbtool_contour.h"
#include "gstnvdsmeta.h"
#include "nvbufsurface.h"  // ... and nvdscustomlib_base.hpp NvBufSurface
#include "nvdscustomlib_base.hpp"

namespace {

class FbtoolContourLib : public DSCustomLibraryBase {
public:
    FbtoolContourLib()
    {
        p_.pgie_id = 1;
        p_.sgie_id = 2;
        p_.scale = 1.5f;
        p_.presence_threshold = 0.5f;
        p_.presence_is_logit = 0;
        p_.landmark_scale = 1.0f;
    }

    // customlib-props="key:value", one per property (gstnvdsvideotemplate.cpp splits at the first ':')
    bool SetProperty(Property& prop) override
    {
        try {
            const std::string& k = prop.key;
            if (k == "stage") {
                if (prop.value != "square" && prop.value != "apply") return false;
                apply_ = prop.value == "apply";
            } else if (k == "pgie-id") p_.pgie_id = std::stoi(prop.value);
            else if (k == "sgie-id") p_.sgie_id = static_cast<unsigned>(std::stoul(prop.value));
            else if (k == "scale") p_.scale = std::stof(prop.value);
            else if (k == "presence") p_.presence_threshold = std::stof(prop.value);
            else if (k == "presence-is-logit") p_.presence_is_logit = std::stoi(prop.value);
            else if (k == "landmark-scale") p_.landmark_scale = std::stof(prop.value);
            else {
                GST_ERROR("fbtool contour: unknown property %s", k.c_str());
                return false;
            }
        } catch (const std::exception&) {
            GST_ERROR("fbtool contour: bad value %s for %s", prop.value.c_str(), prop.key.c_str());
            return false;
        }
        return p_.scale >= 1.0f;
    }

    bool HandleEvent(GstEvent*) override { return true; }

    char* QueryProperties() override
    {
        static const char text[] =
            "fbtool contour properties (customlib-props=\"key:value\", one each):\n"
            "  stage:square|apply  before the FaceMesh nvinfer (square the boxes) or after it (contours)\n"
            "  pgie-id:G  sgie-id:S  scale:1.5  presence:0.5  presence-is-logit:0  landmark-scale:1\n";
        char* s = new char[sizeof(text)];
        std::memcpy(s, text, sizeof(text));
        return s;
    }

    BufferResult ProcessBuffer(GstBuffer* inbuf) override
    {
        NvDsBatchMeta* batch = gst_buffer_get_nvds_batch_meta(inbuf);
        if (batch == nullptr) return BufferResult::Buffer_Error;
        nvds_acquire_meta_lock(batch);
        for (GList* l = batch->frame_meta_list; l != nullptr; l = l->next) {
            auto* frame = static_cast<NvDsFrameMeta*>(l->data);
            if (apply_) fbtool_contour_apply(frame, &p_);
            else fbtool_contour_square(frame, &p_);
        }
        nvds_release_meta_lock(batch);
        return BufferResult::Buffer_Ok;
    }

private:
    FbtoolContourParams p_{};  // frame size 0: the streammux frame (frame_meta->pipeline_width/height)
    bool apply_ = false;
};

}  // namespace

// gstnvdsvideotemplate's factory (nvdscustomlib_factory.hpp) looks this symbol up with dlsym.
extern "C" IDSCustomLibrary* CreateCustomAlgoCtx(GObject* object)
{
    (void)object;
    return new FbtoolContourLib();
}
