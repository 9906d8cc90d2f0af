"""ImGui on the GPU: draws Dear ImGui draw data with moderngl, and owns every texture the UI shows.

`ImGuiRenderer` is the renderer half of an ImGui backend for imgui-bundle 1.92+:

* the dynamic texture protocol (`ImGuiBackendFlags_RendererHasTextures`): font atlas pages and any
  other `ImTextureData` are created, partially updated and destroyed when ImGui asks
  (WantCreate / WantUpdates / WantDestroy);
* all draw lists of a frame go up in one vertex and one index upload; `VtxOffset` and the list's
  place in the shared buffer are folded into the indices on the CPU, so each command is one
  `glDrawElements` with an index offset;
* per-command scissor rects, ImGui's blending, HiDPI (`draw_data.framebuffer_scale`).

It renders into whatever framebuffer moderngl has bound (`ctx.fbo`): the window's `ctx.screen` or an
offscreen one, and uses only moderngl, so it never disagrees with moderngl's idea of GL state. It
restores the enable flags (depth test, culling...), viewport, scissor and wireframe it found, and
leaves the blend function at moderngl's default.

`UiTexture` is a moderngl texture that panels show with `imgui.image`, filled from a numpy array
whose first row is the top of the picture (so no V flip is needed to show it upright).

Any moderngl texture can be shown: pass `imgui.ImTextureRef(texture.glo)`; textures that were render
targets have their first row at the bottom and need a V flip (`engine.ui.widgets.image(..., flip_v=True)`).

    renderer = ImGuiRenderer(ctx)          # after the ImGui context exists (engine.ui.backend.UiBackend)
    ...  ui.new_frame(...); gui code; draw_data = ui.render()
    ctx.screen.use(); renderer.render(draw_data)
    renderer.release()                     # before UiBackend.destroy()
"""

from __future__ import annotations

import ctypes

import moderngl
import numpy as np
from convscope.engine.gpu.programs import create_program
from imgui_bundle import imgui

# ImDrawVert: pos 2f, uv 2f, col 4 x u8 (RGBA in memory), 20 bytes.
_VERTEX_FORMAT = "2f 2f 4f1"
_VERTEX_ATTRS = ("in_position", "in_uv", "in_color")
_INDEX_DTYPE = {2: np.uint16, 4: np.uint32}[imgui.INDEX_SIZE]  # ImDrawIdx, as ImGui writes it
# ImGui's blending: straight alpha for colour, and alpha that stays meaningful in offscreen targets.
_BLEND = (moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA, moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA)
_STATUS = imgui.ImTextureStatus


def _host_bytes(address: int, nbytes: int) -> np.ndarray:
    """A uint8 view of C++-owned memory (an ImVector's storage); copy it before ImGui moves on."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))


class ImGuiRenderer:
    """Draws ImGui draw data into the bound framebuffer and services ImGui's texture requests."""

    def __init__(self, ctx: moderngl.Context) -> None:
        if imgui.get_current_context() is None:
            raise RuntimeError(
                "ImGuiRenderer needs an ImGui context: create engine.ui.backend.UiBackend first"
            )
        self.ctx = ctx
        self.program = create_program(ctx, "imgui")  # shaders/imgui.glsl
        self.program["u_texture"].value = 0
        self._vbo = ctx.buffer(reserve=64 * 1024, dynamic=True)
        self._ibo = ctx.buffer(reserve=64 * 1024, dynamic=True)
        self._vao = ctx.vertex_array(
            self.program,
            [(self._vbo, _VERTEX_FORMAT, *_VERTEX_ATTRS)],
            index_buffer=self._ibo,
            index_element_size=4,
        )
        self._owned: dict[int, moderngl.Texture] = {}  # GL name -> texture made for an ImTextureData
        self._foreign: dict[int, moderngl.Texture] = {}  # GL name -> non-owning wrapper of a user texture

        io = imgui.get_io()
        io.backend_flags |= (
            imgui.BackendFlags_.renderer_has_textures | imgui.BackendFlags_.renderer_has_vtx_offset
        )
        max_size = int(ctx.info.get("GL_MAX_TEXTURE_SIZE", 4096))
        platform_io = imgui.get_platform_io()
        platform_io.renderer_texture_max_width = max_size
        platform_io.renderer_texture_max_height = max_size

    # -- textures -------------------------------------------------------------------------------

    @property
    def texture_count(self) -> int:
        """GL textures this renderer made for ImGui (font atlas pages); for tests and leak checks."""
        return len(self._owned)

    def update_textures(self, textures: imgui.ImVector_ImTextureData_ptr | None = None) -> None:
        """Serve ImGui's create / update / destroy requests. `render` calls this; call it directly
        only to prepare textures without drawing."""
        if textures is None:
            textures = imgui.get_platform_io().textures
        for tex in textures:
            status = tex.status
            if status == _STATUS.want_create:
                self._create_texture(tex)
            elif status == _STATUS.want_updates:
                self._update_texture(tex)
            elif status == _STATUS.want_destroy and tex.unused_frames > 0:
                # Not while this frame's commands may still sample it (same rule as imgui_impl_opengl3).
                self._destroy_texture(tex)

    def _create_texture(self, tex: imgui.ImTextureData) -> None:
        if tex.format != imgui.ImTextureFormat.rgba32:
            raise RuntimeError(f"ImGui texture #{tex.unique_id}: only RGBA32 is supported, got {tex.format}")
        texture = self.ctx.texture((tex.width, tex.height), 4, tex.get_pixels_array(), dtype="f1")
        # Bilinear sampling is what ImGui's baked anti-aliased lines expect.
        texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        texture.repeat_x = texture.repeat_y = False
        self._owned[texture.glo] = texture
        tex.set_tex_id(texture.glo)
        tex.set_status(_STATUS.ok)

    def _update_texture(self, tex: imgui.ImTextureData) -> None:
        texture = self._owned[tex.tex_id]
        pixels = tex.get_pixels_array().reshape(tex.height, tex.width, 4)
        # One upload of the bounding box of all changed rects (the pixels between are valid too).
        r = tex.update_rect
        if r.w > 0 and r.h > 0:
            block = np.ascontiguousarray(pixels[r.y : r.y + r.h, r.x : r.x + r.w])
            texture.write(block, viewport=(r.x, r.y, r.w, r.h))
        tex.set_status(_STATUS.ok)

    def _destroy_texture(self, tex: imgui.ImTextureData) -> None:
        texture = self._owned.pop(tex.tex_id, None)
        if texture is not None:
            texture.release()
        tex.set_tex_id(0)
        tex.set_status(_STATUS.destroyed)

    def _texture_for(self, tex_id: int) -> moderngl.Texture:
        texture = self._owned.get(tex_id) or self._foreign.get(tex_id)
        if texture is None:
            # A texture the caller made (imgui.ImTextureRef(texture.glo)). Binding needs only the GL
            # name, so the size given here does not matter, and releasing this wrapper frees nothing.
            texture = self.ctx.external_texture(tex_id, (1, 1), 4, 0, "f1")
            self._foreign[tex_id] = texture
        return texture

    def forget_texture(self, glo: int) -> None:
        """Drop the cached wrapper of a user texture (call when that texture is released, so a later
        texture that reuses the GL name is not confused with it; harmless either way)."""
        wrapper = self._foreign.pop(glo, None)
        if wrapper is not None:
            wrapper.release()

    # -- drawing --------------------------------------------------------------------------------

    def render(self, draw_data: imgui.ImDrawData) -> None:
        """Update textures, then draw `draw_data` into the currently bound framebuffer."""
        self.update_textures(draw_data.textures)

        disp_x, disp_y = draw_data.display_pos.x, draw_data.display_pos.y
        disp_w, disp_h = draw_data.display_size.x, draw_data.display_size.y
        scale_x, scale_y = draw_data.framebuffer_scale.x, draw_data.framebuffer_scale.y
        fb_w, fb_h = int(disp_w * scale_x), int(disp_h * scale_y)
        if fb_w <= 0 or fb_h <= 0 or draw_data.total_idx_count == 0:
            return

        draws = self._upload(draw_data)
        left, right, top, bottom = disp_x, disp_x + disp_w, disp_y, disp_y + disp_h
        self.program["u_projection"].write(
            np.array(
                [
                    [2.0 / (right - left), 0.0, 0.0, 0.0],
                    [0.0, 2.0 / (top - bottom), 0.0, 0.0],
                    [0.0, 0.0, -1.0, 0.0],
                    [(right + left) / (left - right), (top + bottom) / (bottom - top), 0.0, 1.0],
                ],
                dtype="f4",
            )  # rows here are GL's columns
        )

        ctx = self.ctx
        fbo = ctx.fbo
        if fbo is None:
            raise RuntimeError(
                "ImGuiRenderer.render: no framebuffer bound; call ctx.screen.use() or fbo.use() first"
            )
        saved_viewport, saved_scissor, saved_wireframe = fbo.viewport, fbo.scissor, ctx.wireframe
        scope = ctx.scope(fbo, enable_only=moderngl.BLEND)  # restores the caller's enable flags on exit
        try:
            with scope:
                ctx.blend_equation = moderngl.FUNC_ADD
                ctx.blend_func = _BLEND
                ctx.wireframe = False
                ctx.viewport = (0, 0, fb_w, fb_h)
                for tex_id, clip, first, count in draws:
                    # Clip rect in display space -> framebuffer pixels, GL's origin at the bottom.
                    x0 = max((clip.x - disp_x) * scale_x, 0.0)
                    y0 = max((clip.y - disp_y) * scale_y, 0.0)
                    x1 = min((clip.z - disp_x) * scale_x, float(fb_w))
                    y1 = min((clip.w - disp_y) * scale_y, float(fb_h))
                    if x1 <= x0 or y1 <= y0:
                        continue
                    ctx.scissor = (int(x0), int(fb_h - y1), int(x1 - x0), int(y1 - y0))
                    self._texture_for(tex_id).use(0)
                    self._vao.render(moderngl.TRIANGLES, vertices=count, first=first)
        finally:
            scope.release()
            fbo.viewport = saved_viewport
            # moderngl reports a disabled scissor as the full-size box; keep it disabled then.
            fbo.scissor = None if tuple(saved_scissor) == (0, 0, *fbo.size) else saved_scissor
            ctx.wireframe = saved_wireframe
            ctx.blend_func = moderngl.DEFAULT_BLENDING

    def _upload(self, draw_data: imgui.ImDrawData) -> list[tuple[int, imgui.ImVec4, int, int]]:
        """Copy every draw list into one vertex and one index buffer; return the draw commands as
        (texture id, clip rect, first index, index count)."""
        vsize = imgui.VERTEX_SIZE
        vertices = np.empty(draw_data.total_vtx_count * vsize, np.uint8)
        # 32-bit on the GPU whatever ImDrawIdx is: indices are made absolute over all draw lists.
        indices = np.empty(draw_data.total_idx_count, np.uint32)
        draws: list[tuple[int, imgui.ImVec4, int, int]] = []
        vtx_base = idx_base = 0
        for draw_list in draw_data.cmd_lists:
            n_vtx, n_idx = draw_list.vtx_buffer.size(), draw_list.idx_buffer.size()
            if n_vtx == 0 or n_idx == 0:
                continue
            vertices[vtx_base * vsize : (vtx_base + n_vtx) * vsize] = _host_bytes(
                draw_list.vtx_buffer.data_address(), n_vtx * vsize
            )
            list_indices = _host_bytes(draw_list.idx_buffer.data_address(), n_idx * imgui.INDEX_SIZE).view(
                _INDEX_DTYPE
            )
            for cmd in draw_list.cmd_buffer:
                count = cmd.elem_count
                if count == 0:
                    continue  # user callbacks carry no geometry; convscope does not use them
                start = cmd.idx_offset
                # Make indices absolute in the shared buffer: the base-vertex that
                # glDrawElementsBaseVertex would add, done once here.
                indices[idx_base + start : idx_base + start + count] = list_indices[start : start + count]
                indices[idx_base + start : idx_base + start + count] += vtx_base + cmd.vtx_offset
                draws.append((cmd.get_tex_id(), cmd.clip_rect, idx_base + start, count))
            vtx_base += n_vtx
            idx_base += n_idx
        for buffer, data, used in ((self._vbo, vertices, vtx_base * vsize), (self._ibo, indices, idx_base)):
            data = data[:used]
            if data.nbytes > buffer.size:
                buffer.orphan(max(data.nbytes, 2 * buffer.size))
            if data.nbytes:
                buffer.write(data)
        return draws

    # -- lifetime -------------------------------------------------------------------------------

    def release(self) -> None:
        """Free every GL object made here. While the ImGui context is still alive its textures are
        marked destroyed, so a new renderer would recreate them."""
        if imgui.get_current_context() is not None:
            for tex in imgui.get_platform_io().textures:
                if tex.tex_id in self._owned:
                    tex.set_tex_id(0)
                    tex.set_status(_STATUS.destroyed)
            imgui.get_io().backend_flags &= ~(
                imgui.BackendFlags_.renderer_has_vtx_offset  # textures flag stays: UiBackend owns it
            )
        for texture in self._owned.values():
            texture.release()
        for wrapper in self._foreign.values():
            wrapper.release()
        self._owned.clear()
        self._foreign.clear()
        for obj in (self._vao, self._vbo, self._ibo, self.program):
            obj.release()


class UiTexture:
    """A texture panels show with `imgui.image(tex.ref, size)`, filled from numpy rows top-first.

    One component shows grey (the red channel swizzled to RGB); floats are taken as [0, 1].
    """

    def __init__(
        self, ctx: moderngl.Context, size: tuple[int, int], components: int = 1, smooth: bool = True
    ):
        if components not in (1, 3, 4):
            raise ValueError(f"UiTexture: components must be 1, 3 or 4, got {components}")
        self.size = (int(size[0]), int(size[1]))  # (width, height)
        self.components = components
        self.texture = ctx.texture(self.size, components, dtype="f1")
        self.texture.repeat_x = self.texture.repeat_y = False
        flt = moderngl.LINEAR if smooth else moderngl.NEAREST
        self.texture.filter = (flt, flt)
        if components == 1:
            self.texture.swizzle = "RRR1"
        self._version: object = None

    @property
    def glo(self) -> int:
        return self.texture.glo

    @property
    def ref(self) -> imgui.ImTextureRef:
        return imgui.ImTextureRef(self.texture.glo)

    def upload(self, pixels: np.ndarray) -> None:
        """Replace the contents. `pixels`: (height, width[, components]), uint8 or float in [0, 1]."""
        w, h = self.size
        expected = (h, w) if self.components == 1 else (h, w, self.components)
        if pixels.shape != expected and not (self.components == 1 and pixels.shape == (h, w, 1)):
            raise ValueError(f"UiTexture.upload: expected shape {expected}, got {pixels.shape}")
        if pixels.dtype != np.uint8:
            pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        self.texture.write(np.ascontiguousarray(pixels))

    def sync(self, pixels: np.ndarray, version: object) -> bool:
        """Upload only when `version` differs from the last one synced; True when it uploaded."""
        if version == self._version:
            return False
        self.upload(pixels)
        self._version = version
        return True

    def release(self) -> None:
        self.texture.release()
