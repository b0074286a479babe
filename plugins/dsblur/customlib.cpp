// fbtool's DeepStream blur as an nvdsvideotemplate custom library (NVIDIA's IDSCustomLibrary,
// gst-nvdsvideotemplate/includes/nvdscustomlib_interface.hpp; example customlib_impl/). Placed after
// nvtracker:
//   nvtracker ... ! nvdsvideotemplate customlib-name=libnvds_fbtool_dsblur.so
//       customlib-props="hold:12" customlib-props="classes:0" customlib-props="gie-id:1"
//       customlib-props="mask:box" ! ...
// Per batch, in place: the hold/mask component (ds_hold.cpp) decides which faces are blurred (detected,
// untracked new faces, shadow-tracked faces held for `hold` frames) with the whole box or a binary
// non-empty mask each, then
// fbtool's blur kernel (fbtool_dsblur.h, blur.cu) blurs them on the RGBA or NV12 surface.
#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fbtool_ds_hold.h"
#include "fbtool_dsblur.h"
#include "gst-nvevent.h"
#include "gstnvdsmeta.h"
#include "nvbufsurface.h"
#include "nvdscustomlib_base.hpp"

namespace {

class FbtoolDsBlur : public DSCustomLibraryBase {
public:
    bool SetInitParams(DSCustom_CreateParams* params) override
    {
        DSCustomLibraryBase::SetInitParams(params);
        stream_ = params->m_cudaStream;
        if (m_inVideoFmt != GST_VIDEO_FORMAT_RGBA && m_inVideoFmt != GST_VIDEO_FORMAT_NV12) {
            GST_ELEMENT_ERROR(m_element, STREAM, FORMAT, ("fbtool dsblur: input must be NVMM RGBA or NV12"),
                              ("got %s", gst_video_format_to_string(m_inVideoFmt)));
            return false;
        }
        hold_.reset(new FbtoolHold(cfg_));
        return true;
    }

    // customlib-props="key:value", one per property (gstnvdsvideotemplate.cpp splits at the first ':')
    bool SetProperty(Property& prop) override
    {
        try {
            if (prop.key == "hold") {
                cfg_.hold = std::stoi(prop.value);
            } else if (prop.key == "mask") {
                if (prop.value != "box" && prop.value != "own")
                    throw std::invalid_argument(prop.value);
                cfg_.whole_box = prop.value == "box";
            } else if (prop.key == "gie-id") {
                cfg_.gie_id = std::stoi(prop.value);
            } else if (prop.key == "classes") {
                cfg_.classes.clear();
                std::stringstream ss(prop.value);
                std::string item;
                while (std::getline(ss, item, ';'))
                    if (!item.empty())
                        cfg_.classes.push_back(std::stoi(item));
            } else {
                GST_ERROR("fbtool dsblur: unknown property %s", prop.key.c_str());
                return false;
            }
        } catch (const std::exception&) {
            GST_ERROR("fbtool dsblur: bad value %s for %s", prop.value.c_str(), prop.key.c_str());
            return false;
        }
        if (cfg_.hold < 0)
            return false;
        if (hold_)
            hold_.reset(new FbtoolHold(cfg_));
        return true;
    }

    bool HandleEvent(GstEvent* event) override
    {
        // a restarted or removed stream starts without tracks (its ids restart too)
        guint source = 0;
        auto type = (GstNvEventType)GST_EVENT_TYPE(event);
        if (hold_ && type == GST_NVEVENT_STREAM_EOS) {
            gst_nvevent_parse_stream_eos(event, &source);
            hold_->reset_stream(source);
        } else if (hold_ && type == GST_NVEVENT_PAD_DELETED) {
            gst_nvevent_parse_pad_deleted(event, &source);
            hold_->reset_stream(source);
        }
        return true;
    }

    char* QueryProperties() override
    {
        static const char text[] =
            "fbtool dsblur properties (customlib-props=\"key:value\", one each):\n"
            "  hold:N        frames a shadow-tracked face stays blurred after it was last seen\n"
            "  classes:A;B   class ids to blur (default: all)\n"
            "  gie-id:G      only objects of this detector's gie-unique-id (default: any)\n"
            "  mask:box|own  blur each face's whole box (default) or its own binary mask (two models)\n";
        char* s = new char[sizeof(text)];
        std::memcpy(s, text, sizeof(text));
        return s;
    }

    BufferResult ProcessBuffer(GstBuffer* inbuf) override
    {
        NvBufSurface* surf = getNvBufSurface(inbuf);
        NvDsBatchMeta* batch = gst_buffer_get_nvds_batch_meta(inbuf);
        if (surf == nullptr || batch == nullptr || !hold_)
            return BufferResult::Buffer_Error;
        if (surf->memType != NVBUF_MEM_CUDA_DEVICE && surf->memType != NVBUF_MEM_CUDA_UNIFIED &&
            surf->memType != NVBUF_MEM_DEFAULT) {
            GST_ELEMENT_ERROR(m_element, STREAM, FAILED, ("fbtool dsblur: needs CUDA device memory (dGPU)"),
                              ("memType %d", (int)surf->memType));
            return BufferResult::Buffer_Error;
        }
        int err = 0;
        nvds_acquire_meta_lock(batch);
        for (GList* l = batch->frame_meta_list; l != nullptr && err == 0; l = l->next) {
            auto* frame = static_cast<NvDsFrameMeta*>(l->data);
            std::vector<FbtoolBlurTarget> targets = hold_->process(batch, frame);
            if (targets.empty() || frame->batch_id >= surf->numFilled)
                continue;
            std::vector<FbtoolDsBlurObject> objs;
            objs.reserve(targets.size());
            for (const auto& t : targets) {
                const auto& r = t.obj->rect_params;
                const auto& m = t.obj->mask_params;
                objs.push_back({r.left, r.top, r.width, r.height, m.data, (int)m.width, (int)m.height});
            }
            NvBufSurfaceParams& p = surf->surfaceList[frame->batch_id];
            auto* base = static_cast<unsigned char*>(p.dataPtr);
            if (p.colorFormat == NVBUF_COLOR_FORMAT_NV12 || p.colorFormat == NVBUF_COLOR_FORMAT_NV12_ER)
                err = fbtool_dsblur_nv12(base + p.planeParams.offset[0], p.planeParams.pitch[0],
                                         base + p.planeParams.offset[1], p.planeParams.pitch[1], p.width, p.height,
                                         objs.data(), (int)objs.size(), stream_);
            else
                err = fbtool_dsblur_rgba(base, p.planeParams.pitch[0], p.width, p.height, objs.data(),
                                         (int)objs.size(), stream_);
        }
        nvds_release_meta_lock(batch);
        // the masks handed to the kernel are host memory owned by the metadata: finish before it moves on
        if (err == 0)
            err = (int)cudaStreamSynchronize(stream_);
        if (err != 0) {
            GST_ELEMENT_ERROR(m_element, STREAM, FAILED, ("fbtool dsblur: blur kernel failed"), ("CUDA error %d", err));
            return BufferResult::Buffer_Error;
        }
        return BufferResult::Buffer_Ok;
    }

private:
    FbtoolHoldConfig cfg_;
    std::unique_ptr<FbtoolHold> hold_;
    cudaStream_t stream_ = nullptr;
};

}  // namespace

// gstnvdsvideotemplate's factory (nvdscustomlib_factory.hpp) looks this symbol up with dlsym and
// calls it with the element as a GObject*.
extern "C" IDSCustomLibrary* CreateCustomAlgoCtx(GObject* object)
{
    (void)object;
    return new FbtoolDsBlur();
}
